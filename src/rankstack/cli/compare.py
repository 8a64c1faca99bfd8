"""``rankstack compare``: quality and cost of several re-rankers side by side, in one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankstack.cli._common import add_config_arg, say

TEST_CHOICES = {"t": ["t"], "perm": ["perm"], "both": ["t", "perm"]}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="re-rank with several models; one table of quality (with significance) "
                        "and cost (pairs/s, latency, memory, load time)",
        description="Each MODEL re-ranks the candidates through the normal resumable path "
                    "(in its own fresh process, same threads for all); the runs are evaluated "
                    "like 'rankstack evaluate' (tests vs the baseline) and each model's cost is "
                    "measured: warm-up, interleaved timing passes, medians. MODEL is "
                    "'candidates' (the first-stage run as is), LABEL=SPEC, a YAML mapping "
                    "('{model: M, family: cross-encoder, settings: {dtype: fp32}}'; keys "
                    "model, family, preset, backend, settings, members, depth, max_queries, "
                    "timing_queries, label) or a YAML file "
                    "holding one. Writes OUT_DIR/compare.json, OUT_DIR/compare.png (quality vs "
                    "latency, Pareto front marked) and the runs under OUT_DIR/runs/.")
    add_config_arg(p)
    p.add_argument("--dataset", default=None,
                   help="dataset name (dl19, ...) or retrieve-results JSON: candidates, "
                        "passages, qrels")
    p.add_argument("--run", default=None, help="TREC run of candidates (replaces the dataset's)")
    p.add_argument("--topics", default=None, help="topics file (qid<TAB>text)")
    p.add_argument("--corpus", default=None, help="JSONL corpus with the passage texts")
    p.add_argument("--qrels", default=None, help="qrels file (replaces the dataset's)")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    p.add_argument("--out-dir", required=True, help="where the runs, JSON and plot go")
    p.add_argument("--measures", nargs="+", default=["nDCG@10"], metavar="MEASURE",
                   help="ir_measures measures (default nDCG@10; the first drives deltas and plot)")
    p.add_argument("--baseline", default=None, help="label of the baseline (default: first)")
    p.add_argument("--reference", default=None,
                   help="label the cost ratios are relative to (default: the first model "
                        "with a measured cost)")
    p.add_argument("--threads", type=int, default=1, help="threads for every model (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing passes")
    p.add_argument("--warmup", type=int, default=1, help="warm-up queries per model")
    p.add_argument("--timing-queries", type=int, default=10,
                   help="queries per timing pass (first N of each model's queries; 0 = all)")
    p.add_argument("--max-queries", type=int, default=None,
                   help="only the first N queries of the candidates (all models)")
    p.add_argument("--missing", choices=["zero", "skip"], default="skip",
                   help="judged queries a run lacks (e.g. an LLM on a few queries): left out "
                        "(default) or scored 0")
    p.add_argument("--binary-rel", type=int, default=None,
                   help="minimum grade a binary measure counts as relevant (default: the "
                        "qrels' own, 2 for TREC DL datasets; 1 for a qrels file)")
    p.add_argument("--test", choices=sorted(TEST_CHOICES), default="both")
    p.add_argument("--rounds", type=int, default=10_000, help="randomization test rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--json", default=None, help="JSON path (default OUT_DIR/compare.json)")
    p.add_argument("--plot", default=None, help="PNG path (default OUT_DIR/compare.png)")
    p.add_argument("--markdown", default=None, help="also write the table as markdown here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rankstack.errors import ConfigError
    from rankstack.evaluate.compare import CompareSettings, DatasetArgs, compare, parse_model

    if not args.dataset and not args.run:
        raise ConfigError("give --dataset (name or retrieve-results JSON) or --run")
    models = [parse_model(m) for m in args.models]
    settings = CompareSettings(
        measures=list(args.measures), baseline=args.baseline, reference=args.reference,
        threads=args.threads, repeats=args.repeats, warmup=args.warmup,
        timing_queries=args.timing_queries or None, max_queries=args.max_queries,
        missing=args.missing, binary_rel=args.binary_rel, tests=TEST_CHOICES[args.test],
        rounds=args.rounds, seed=args.seed, alpha=args.alpha)
    data = DatasetArgs(args.dataset or "files", run=args.run, topics=args.topics,
                       corpus=args.corpus, qrels=args.qrels)
    result = compare(data, models, args.out_dir, settings, progress=True)
    Console(width=200).print(result.table())
    out = Path(args.out_dir)
    json_path = args.json or out / "compare.json"
    plot_path = args.plot or out / "compare.png"
    result.write_json(json_path)
    front = result.plot(plot_path)
    if args.markdown:
        from rankstack.io import atomic_write

        with atomic_write(args.markdown) as fh:
            fh.write(result.markdown())
        say(f"wrote {args.markdown}")
    print(f"Pareto front ({result.measure} vs p50 latency): {', '.join(front) or '-'}")
    say(f"wrote {json_path}, {plot_path} and the runs under {out / 'runs'}")
    return 0
