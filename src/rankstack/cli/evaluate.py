"""``rankstack evaluate``: score runs against qrels, side by side, with paired significance tests."""

from __future__ import annotations

import argparse
import os

from rankstack.cli._common import add_config_arg

TEST_CHOICES = {"t": ["t"], "perm": ["perm"], "both": ["t", "perm"]}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate runs (nDCG, RR, recall...) with significance tests",
        description="Evaluate TREC runs with ir_measures, in rankstack's order (score desc, doc id "
                    "asc). Judged queries a run lacks score 0 (--missing zero, like trec_eval -c) or "
                    "are skipped; queries without judgments are ignored; both are counted. With "
                    "several runs, each is tested against the baseline (paired t-test and/or "
                    "randomization test, Holm-Bonferroni corrected over the compared runs).")
    add_config_arg(p)
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="TREC run file, retrieve-results JSON, or dataset name (its candidates)")
    # Checked in run(), not by argparse: cli.main parses once before the YAML configs apply.
    p.add_argument("--qrels", default=None,
                   help="required: dataset name (e.g. dl19: its qrels and binary threshold) or "
                        "qrels file (a file that exists wins over a dataset name)")
    p.add_argument("--measures", nargs="+", default=None, metavar="MEASURE",
                   help="ir_measures measures (default: nDCG@10 RR@10 R@100)")
    p.add_argument("--baseline", default=None,
                   help="baseline: index into RUN (0-based), one of the RUNs, or another run "
                        "(default: the first RUN when there are several)")
    p.add_argument("--binary-rel", type=int, default=None,
                   help="minimum grade a binary measure (RR, AP, R, P) counts as relevant; "
                        "shown in the headers, e.g. RR(rel=2)@10 (default: the dataset's, 2 "
                        "for TREC DL; 1 for a qrels file, with a warning if it is graded)")
    p.add_argument("--missing", choices=["zero", "skip"], default="zero",
                   help="judged queries a run lacks: score 0 (default) or leave out")
    p.add_argument("--test", choices=sorted(TEST_CHOICES), default="both",
                   help="significance test(s) against the baseline")
    p.add_argument("--rounds", type=int, default=10_000, help="randomization test rounds")
    p.add_argument("--seed", type=int, default=0, help="randomization test seed")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (after Holm)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write means, per-query values, tests and policy counts as JSON")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a per-query delta plot vs the baseline")
    p.add_argument("--plot-measure", default=None, metavar="MEASURE",
                   help="measure of the delta plot (default: the first)")
    p.add_argument("--per-query", action="store_true", help="also print per-query values")
    p.set_defaults(func=run)


def _labels(args_runs: list[str]) -> list[str]:
    """Run labels: the file name where that is unambiguous, else the argument as given."""
    names = [os.path.basename(a.rstrip("/")) or a for a in args_runs]
    out: list[str] = []
    for a, name in zip(args_runs, names, strict=True):
        label, k = (name if names.count(name) == 1 else a), 1
        base = label
        while label in out:
            k += 1
            label = f"{base}#{k}"
        out.append(label)
    return out


def run(args: argparse.Namespace) -> int:
    from rankstack.cli._common import result_console, say
    from rankstack.errors import ConfigError
    from rankstack.evaluate import DEFAULT_MEASURES, Evaluator
    from rankstack.evaluate.report import comparison_table, per_query_lines, plot_deltas, write_json
    from rankstack.sources import load_qrels_arg, load_run_arg

    if not args.runs:
        raise ConfigError("give at least one RUN (a TREC run file or a dataset name)")
    if not args.qrels:
        raise ConfigError("--qrels is required (a dataset name such as dl19, or a qrels file)")
    qrels = load_qrels_arg(args.qrels, "--qrels")
    labels = _labels(list(args.runs))
    runs = {label: load_run_arg(a) for label, a in zip(labels, args.runs, strict=True)}
    baseline: int | str | None = 0 if len(runs) > 1 else None
    if args.baseline is not None:
        b = str(args.baseline)
        if b.lstrip("-").isdigit():
            baseline = int(b)
        elif b in args.runs:
            baseline = labels[list(args.runs).index(b)]
        elif b in runs:
            baseline = b
        else:  # another run: evaluated too, listed first
            label = _labels([b, *args.runs])[0]
            if label in runs:
                label = b
            runs = {label: load_run_arg(b), **runs}
            baseline = label
    ev = Evaluator(args.measures or list(DEFAULT_MEASURES), qrels, binary_rel=args.binary_rel,
                   missing=args.missing)
    comp = ev.compare(runs, baseline=baseline, tests=TEST_CHOICES[args.test], rounds=args.rounds,
                      seed=args.seed, alpha=args.alpha)
    result_console().print(comparison_table(comp))
    if len(comp.results) == 1:
        r = comp.results[0]
        for m in r.measures:
            print(f"{m} {r.aggregates[m]:.4f}")
    for r in comp.results:
        if r.missing:
            how = "scored 0" if r.missing_policy == "zero" else "left out of the means"
            print(f"{r.name}: {len(r.missing)} judged querie(s) not in the run, {how}")
        if r.unjudged:
            print(f"{r.name}: {len(r.unjudged)} querie(s) without judgments ignored")
    if args.per_query:
        print("\n".join(per_query_lines(comp)))
    if args.json:
        write_json(comp, args.json)
        say(f"wrote {args.json}")
    if args.plot:
        plot_deltas(comp, args.plot, ev.name_of(args.plot_measure) if args.plot_measure else None)
        say(f"wrote {args.plot}")
    return 0
