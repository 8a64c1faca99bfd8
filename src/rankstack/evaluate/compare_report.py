"""The result of :func:`rankstack.evaluate.compare.compare`: one table, JSON, the scatter plot."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rankstack.evaluate import efficiency as eff
from rankstack.evaluate.report import _cell, comparison_to_dict
from rankstack.io import atomic_write

if TYPE_CHECKING:
    from rich.table import Table

    from rankstack.evaluate.compare_spec import CompareSettings, DatasetArgs, ModelCost, ModelSpec
    from rankstack.evaluate.evaluator import Comparison


def environment() -> dict[str, Any]:
    """CPU model, core count, load average: where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1m": None if load is None
            else round(load[0], 2), "python": platform.python_version()}


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


@dataclass
class CompareResult:
    comparison: Comparison
    costs: dict[str, ModelCost]
    settings: CompareSettings
    reference: str | None
    data: DatasetArgs
    models: dict[str, ModelSpec]
    env: dict[str, Any] = field(default_factory=environment)

    @property
    def measure(self) -> str:
        """The first measure: the one the deltas, ratios and the plot use."""
        return self.comparison.measures[0]

    def delta(self, label: str, measure: str | None = None) -> float | None:
        """Mean per-query difference to the baseline on the queries both ranked."""
        from rankstack.evaluate.evaluator import paired_values

        comp = self.comparison
        base = comp.baseline_result
        if base is None or label == base.name:
            return None
        _, a, b = paired_values(comp.result(label), base, measure or self.measure)
        return math.fsum(x - y for x, y in zip(a, b, strict=True)) / len(a) if a else None

    def ratios(self, label: str) -> dict[str, float | None]:
        """``faster`` (pairs/s over the reference's) and ``less_memory`` (reference / this)."""
        c, ref = self.costs.get(label), self.costs.get(self.reference or "")
        if c is None or ref is None:
            return {"faster": None, "less_memory": None}
        return {"faster": eff.ratio(c.pairs_per_s, ref.pairs_per_s),
                "less_memory": eff.ratio(ref.memory_mb, c.memory_mb)}

    def memory_method(self) -> str:
        for c in self.costs.values():
            return str(c.memory.get("method", ""))
        return ""

    def caption(self) -> str:
        e = self.env
        comp = self.comparison
        base = comp.baseline_result.name if comp.baseline_result else "-"
        return (f"quality: {comp.qrels_name}, binary rel >= {comp.binary_rel}, judged queries a "
                f"run lacks {'left out' if comp.missing_policy == 'skip' else 'scored 0'}; "
                f"delta = mean per-query difference to {base} "
                f"on the queries both ranked; marks: Holm-corrected paired tests "
                f"({', '.join(comp.test_names) or 'none'}). "
                f"cost: {self.settings.method()}. memory: {self.memory_method()}. ratios vs "
                f"{self.reference}: x faster = pairs/s ratio, x less memory = added-RSS (GPU "
                f"peak where used) ratio. machine: {e['cpu']}, {e['cores']} cores, load avg "
                f"{e['load_avg_1m']} (shared).")

    def table(self) -> Table:
        from rich.table import Table

        head, rows = self.rows()
        t = Table(title=f"{self.data.name}: quality and cost", show_lines=True,
                  caption=self.caption(), caption_justify="left")
        from rankstack.tables import add_columns

        add_columns(t, head)
        for row in rows:
            t.add_row(*row)
        return t

    def rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the table as plain text (the markdown version's cells)."""
        comp = self.comparison
        head = ["model", *comp.measures, f"delta {self.measure}", "queries", "pairs/s",
                "p50 ms/q", "p95 ms/q", "LLM calls/q", "prompt tok/q", "load s",
                "added RSS MB (peak)", "GPU MB", f"x faster vs {self.reference}",
                f"x less memory vs {self.reference}"]
        rows = []
        for i, r in enumerate(comp.results):
            label = r.name + (" (baseline)" if i == comp.baseline else "")
            c = self.costs.get(r.name)
            q = [_cell(comp, r.name, m, r.aggregates[m]).replace("\n", " ")
                 for m in comp.measures]
            row = [label, *q, _f(self.delta(r.name), "{:+.4f}"), str(r.n_queries)]
            if c is None:
                row += ["(given)"] + ["-"] * 9
            else:
                rat = self.ratios(r.name)
                mem = c.memory
                row += [_f(c.pairs_per_s), _f(c.p50_ms, "{:.0f}"), _f(c.p95_ms, "{:.0f}"),
                        _f(c.llm_calls_per_query), _f(c.prompt_tokens_per_query, "{:.0f}"),
                        _f(c.load_s, "{:.2f}"),
                        f"{_f(mem.get('added_rss_mb'), '{:.0f}')} "
                        f"({_f(mem.get('peak_rss_mb'), '{:.0f}')})",
                        _f(mem.get("gpu_peak_mb"), "{:.0f}"),
                        _f(rat["faster"], "{:.2f}x"), _f(rat["less_memory"], "{:.2f}x")]
            rows.append(row)
        return head, rows

    def markdown(self) -> str:
        """The table as GitHub markdown, the method statement under it."""
        head, rows = self.rows()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + self.caption() + "\n"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "dataset": self.data.to_dict(),
            "models": {k: asdict(v) for k, v in self.models.items()},
            "settings": asdict(self.settings),
            "method": {"cost": self.settings.method(), "memory": self.memory_method()},
            "environment": self.env,
            "reference": self.reference,
            "quality": comparison_to_dict(self.comparison),
            "deltas": {r.name: self.delta(r.name) for r in self.comparison.results},
            "costs": {k: v.to_dict() for k, v in self.costs.items()},
            "ratios": {k: self.ratios(k) for k in self.costs},
            "pareto_front": self.pareto(),
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        from rankstack.evaluate.report import _num

        def clean(x: Any) -> Any:
            if isinstance(x, float):
                return _num(x)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        with atomic_write(path) as fh:
            json.dump(clean(self.to_dict()), fh, indent=1, allow_nan=False)
            fh.write("\n")

    def _points(self) -> tuple[list[str], list[float], list[float]]:
        labels = list(self.costs)
        agg = {r.name: r.aggregates[self.measure] for r in self.comparison.results}
        return labels, [self.costs[k].p50_ms for k in labels], [agg[k] for k in labels]

    def pareto(self) -> list[str]:
        labels, costs, quals = self._points()
        return [labels[i] for i in eff.pareto_front(list(zip(costs, quals, strict=True)))]

    def plot(self, path: str | os.PathLike[str]) -> list[str]:
        """Quality vs p50 latency per query (log), Pareto front marked; returns its labels."""
        labels, costs, quals = self._points()
        base = self.comparison.baseline_result
        baseline = None
        if base is not None and base.name not in self.costs:
            baseline = (base.name, base.aggregates[self.measure])
        counts = {k: self.comparison.result(k).n_queries for k in labels}
        partial = [k for k in labels if counts[k] != max(counts.values())]
        title = (f"{self.data.name}: {self.measure} vs cost (threads={self.settings.threads}, "
                 f"medians of {self.settings.repeats} interleaved passes)")
        if partial:
            title += "\n" + ", ".join(f"{k}: {counts[k]} queries" for k in partial) + \
                f" (others {max(counts.values())})"
        front = eff.plot_quality_cost(path, labels, costs, quals, measure=self.measure,
                                      cost_label="p50 latency per query (ms, log scale)",
                                      baseline=baseline, title=title)
        return [labels[i] for i in front]
