"""Reports of a :class:`~rankstack.evaluate.evaluator.Comparison`: rich table, JSON, delta plot."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

from rankstack.errors import ConfigError
from rankstack.io import atomic_write

if TYPE_CHECKING:
    from rich.table import Table

    from rankstack.evaluate.evaluator import Comparison

UP, DOWN = "▲", "▼"


def _num(x: float) -> float | None:
    # JSON has no nan/inf: undefined values (nan) and a t statistic of +-inf (constant non-zero
    # deltas, p = 0) are written as null.
    return None if x is None or not math.isfinite(x) else x


def comparison_to_dict(comp: Comparison) -> dict[str, Any]:
    """Everything: settings, policy counts, means, per-query values, tests (nan/inf -> null)."""
    base = comp.baseline_result
    return {
        "qrels": comp.qrels_name,
        "judged_queries": comp.n_judged,
        "binary_rel": comp.binary_rel,
        "missing_policy": comp.missing_policy,
        "measures": comp.measures,
        "measures_requested": comp.measure_names,
        "baseline": None if base is None else base.name,
        "significance": {"tests": comp.test_names, "alpha": comp.alpha,
                         "correction": "holm-bonferroni over compared runs, per measure and test",
                         "permutation_rounds": comp.rounds, "seed": comp.seed},
        "runs": [
            {
                "name": r.name,
                "aggregates": {m: _num(v) for m, v in r.aggregates.items()},
                "counts": r.counts(),
                "missing_queries": r.missing,
                "unjudged_queries": r.unjudged,
                "per_query": r.per_query,
            }
            for r in comp.results
        ],
        "tests": [
            {"run": t.run, "baseline": t.baseline, "measure": t.measure, "test": t.test,
             "n": t.n, "mean_delta": _num(t.mean_delta), "statistic": _num(t.statistic),
             "p_value": _num(t.p_value), "p_holm": _num(t.p_holm),
             "significant": t.significant(comp.alpha)}
            for t in comp.tests
        ],
    }


def write_json(comp: Comparison, path: str | os.PathLike[str]) -> None:
    """Write :func:`comparison_to_dict` atomically (no NaN/Infinity tokens: those are null)."""
    data = comparison_to_dict(comp)
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")


def _cell(comp: Comparison, run: str, measure: str, value: float) -> str:
    text = "n/a" if math.isnan(value) else f"{value:.4f}"
    for test in comp.test_names:
        try:
            t = comp.test(run, measure, test)
        except KeyError:
            continue
        mark = ""
        if t.significant(comp.alpha):
            mark = UP if t.mean_delta > 0 else DOWN
        p = "n/a" if math.isnan(t.p_holm) else f"{t.p_holm:.2g}"
        text += f"\n{mark}{test} {p}"
    return text


def comparison_table(comp: Comparison) -> Table:
    """Runs x measures; the baseline marked; per test a marker and the Holm-corrected p."""
    from rich.table import Table

    table = Table(title=f"{comp.qrels_name}: {comp.n_judged} judged queries, binary rel >= "
                        f"{comp.binary_rel}", show_lines=bool(comp.tests))
    from rankstack.evaluate.measures import display_name
    from rankstack.tables import add_columns

    # headers never wrap; on a narrow terminal the run names and the counts fold instead
    add_columns(table, ["run", *(display_name(m, comp.binary_rel) for m in comp.measures),
                        "queries"], text=("run", "queries"))
    table.columns[-1].justify = "right"
    for i, r in enumerate(comp.results):
        label = f"{r.name} (baseline)" if i == comp.baseline and len(comp.results) > 1 else r.name
        counts = f"{r.n_queries}"
        if r.missing:
            counts += f" ({len(r.missing)} missing {'=0' if r.missing_policy == 'zero' else 'skipped'})"
        if r.unjudged:
            counts += f" (+{len(r.unjudged)} unjudged)"
        table.add_row(label, *(_cell(comp, r.name, m, r.aggregates[m]) for m in comp.measures),
                      counts)
    if comp.tests:
        table.caption = (f"{UP}/{DOWN}: better/worse than the baseline at alpha={comp.alpha} after "
                         f"Holm-Bonferroni over {len(comp.results) - 1} compared run(s); the p-values "
                         f"shown are corrected. t: paired t-test; perm: paired randomization "
                         f"({comp.rounds} rounds, seed {comp.seed}).")
    return table


def plot_deltas(comp: Comparison, path: str | os.PathLike[str], measure: str | None = None) -> None:
    """Bar plot per compared run of the sorted per-query deltas (run - baseline) of one measure.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch); written
    atomically as PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rankstack.evaluate.stats import paired_values

    base = comp.baseline_result
    if base is None or len(comp.results) < 2:
        raise ConfigError("a delta plot needs a baseline and at least one other run")
    measure = measure or comp.measures[0]
    if measure not in comp.measures:
        measure = comp.measure_names.get(measure, measure)
    if measure not in comp.measures:
        raise ConfigError(f"cannot plot {measure!r}: not one of {', '.join(comp.measures)}")
    others = [r for i, r in enumerate(comp.results) if i != comp.baseline]
    fig = Figure(figsize=(10, 2.8 * len(others) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(others), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, others, strict=True):
        _, a, b = paired_values(r, base, measure)
        deltas = sorted((x - y for x, y in zip(a, b, strict=True)), reverse=True)
        mean = math.fsum(deltas) / len(deltas) if deltas else math.nan
        colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in deltas]
        ax.bar(range(len(deltas)), deltas, width=0.85, color=colors)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlim(-0.5, max(len(deltas), 1) - 0.5)
        ax.set_xticks([])
        ax.set_xlabel(f"{len(deltas)} queries, sorted by delta")
        ax.set_ylabel(f"delta {measure}")
        ax.set_title(f"{r.name} vs {base.name}: {measure}, mean delta {mean:+.4f}")
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)


def per_query_lines(comp: Comparison) -> list[str]:
    """trec_eval -q style lines: ``run<TAB>measure<TAB>qid<TAB>value``, then ``all`` means."""
    lines = []
    for r in comp.results:
        for m in r.measures:
            for q, v in r.per_query[m].items():
                lines.append(f"{r.name}\t{m}\t{q}\t{v:.4f}")
            lines.append(f"{r.name}\t{m}\tall\t{r.aggregates[m]:.4f}")
    return lines
