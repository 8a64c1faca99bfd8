"""What one re-ranking call did: counts of every input policy, model usage, budgets, timings.

One report type for every re-ranker (:class:`rankstack.rerank.base.RunReranker`):
pointwise scorers fill the pair and truncation counts, LLM re-rankers also the usage
(calls, cache hits, tokens; per query), listwise ones the output repairs. Kept on the
re-ranker as ``last_report``; saved as JSON beside a run (``to_dict()`` / :meth:`save`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: warn when more than this share of the scored passages were cut to the token budget
TRUNCATION_WARN_SHARE = 0.05


@dataclass
class Usage:
    """Model calls and tokens (of calls made; cache hits are counted apart as ``cached_*``)."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    wall_s: float = 0.0

    def __iadd__(self, other: Usage) -> Usage:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall_s"] = round(self.wall_s, 4)
        return d


@dataclass
class RerankReport:
    """The report of one :meth:`RunReranker.rerank` call (policies: see rerank.base)."""

    model: str = ""
    score_kind: str = ""
    depth: int | None = None
    queries: int = 0
    pairs_scored: int = 0
    #: candidates below depth, kept under the re-ranked ones in their input order
    kept_below_depth: int = 0
    empty_queries: int = 0
    missing_docs: int = 0
    missing_queries: int = 0
    passages_truncated: int = 0
    queries_truncated: int = 0
    resumed_queries: int = 0
    #: re-ranked docs whose score equals another re-ranked doc's score of the same query
    ties: int = 0
    seconds: float = 0.0
    #: token budgets used (e.g. ``doc_length``, ``max_passage_tokens``) and how to set them
    budgets: dict[str, Any] = field(default_factory=dict)
    # -- LLM re-rankers -------------------------------------------------------------------
    mode: str = ""
    backend: dict[str, Any] = field(default_factory=dict)
    template: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    total: Usage = field(default_factory=Usage)
    per_query: dict[str, Usage] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)
    repairs_per_query: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    #: fusion: the members' reports
    members: list[RerankReport] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return self.seconds

    @property
    def tail_docs(self) -> int:
        return self.kept_below_depth

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                             if f.name not in ("total", "per_query", "members")}
        d["seconds"] = round(self.seconds, 4)
        d["wall_s"] = d["seconds"]
        d["pairs_per_second"] = round(self.pairs_per_second, 2)
        d["total"] = self.total.to_dict()
        d["per_query"] = {q: u.to_dict() for q, u in self.per_query.items()}
        if self.members:
            d["members"] = [m.to_dict() for m in self.members]
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        from rankstack.io import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=1, ensure_ascii=False, default=str)

    def summary(self) -> str:
        s = (f"{self.model}: re-ranked {self.pairs_scored} pairs of {self.queries} queries "
             f"(depth {self.depth}) in {self.seconds:.1f}s ({self.pairs_per_second:.1f} "
             f"pairs/s); empty queries {self.empty_queries}, missing docs "
             f"{self.missing_docs}, missing queries {self.missing_queries}, passages "
             f"truncated {self.passages_truncated}, queries truncated "
             f"{self.queries_truncated}, tied scores {self.ties}")
        if self.resumed_queries:
            s += f", resumed queries {self.resumed_queries}"
        if self.mode:
            u = self.total
            s += (f"; LLM calls {u.calls}, cache hits {u.cache_hits}, prompt tokens "
                  f"{u.prompt_tokens}, generated tokens {u.completion_tokens}")
        if self.repairs:
            s += (f"; repaired windows {self.repairs.get('repaired_windows', 0)}/"
                  f"{self.repairs.get('windows', 0)}")
        return s

    def truncation_warning(self) -> str | None:
        """A warning when truncation may change results: any query, or more than
        :data:`TRUNCATION_WARN_SHARE` of the passages, cut to the token budget."""
        parts = []
        if self.pairs_scored and self.passages_truncated / self.pairs_scored > TRUNCATION_WARN_SHARE:
            parts.append(f"{self.passages_truncated} of {self.pairs_scored} passages "
                         f"({100 * self.passages_truncated / self.pairs_scored:.0f}%)")
        if self.queries_truncated:
            parts.append(f"{self.queries_truncated} queries")
        if not parts:
            return None
        budgets = {k: v for k, v in self.budgets.items() if k != "raise_with"}
        how = self.budgets.get("raise_with") or "raise the budget settings"
        shown = ", ".join(f"{k}={v}" for k, v in budgets.items()) or "the model's limit"
        return (f"{self.model}: {' and '.join(parts)} were truncated to the token budget "
                f"({shown}); this changes scores. To raise it: {how}")

    def warnings(self) -> list[str]:
        """What a user must hear about this call: missing inputs, truncation that may change
        results, LLM output that needed repair."""
        out = []
        if self.missing_docs or self.missing_queries:
            out.append(f"{self.model}: {self.missing_docs} docs and {self.missing_queries} "
                       f"queries missing from the inputs (skipped or kept, counted)")
        t = self.truncation_warning()
        if t:
            out.append(t)
        if self.repairs.get("repaired_windows"):
            out.append(f"{self.model}: LLM output needed repair in "
                       f"{self.repairs['repaired_windows']} of {self.repairs.get('windows', '?')}"
                       f" windows (counted in the report)")
        return out

    def print_table(self, console: Any = None, max_rows: int = 20) -> None:
        """A per-query usage table (LLM re-rankers) and the notes, on stderr."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        if self.mode:
            t = Table(title=f"LLM {self.mode} re-ranking: {self.backend.get('model')} "
                            f"({self.backend.get('backend')}, {self.template})")
            from rankstack.tables import add_columns

            add_columns(t, ("query", "calls", "cache hits", "prompt tok", "gen tok", "wall s"))
            rows = list(self.per_query.items())
            for qid, u in rows[:max_rows]:
                t.add_row(qid, str(u.calls), str(u.cache_hits), str(u.prompt_tokens),
                          str(u.completion_tokens), f"{u.wall_s:.2f}")
            if len(rows) > max_rows:
                t.add_row(f"... {len(rows) - max_rows} more", "", "", "", "", "")
            u = self.total
            t.add_row("TOTAL", str(u.calls), str(u.cache_hits), str(u.prompt_tokens),
                      str(u.completion_tokens), f"{self.seconds:.2f}", style="bold")
            console.print(t)
        if self.repairs:
            r = self.repairs
            console.print(
                f"output repairs: {r.get('repaired_windows', 0)}/{r.get('windows', 0)} windows "
                f"repaired; duplicates {r.get('duplicates', 0)}, out-of-range "
                f"{r.get('out_of_range', 0)}, missing {r.get('missing', 0)}, unparseable "
                f"{r.get('unparseable', 0)}")
        for k, v in self.notes.items():
            console.print(f"{k}: {v}")


def add_reports(a: RerankReport, b: RerankReport) -> RerankReport:
    """``a`` with ``b``'s counts, usage and repairs added (one re-ranker, several calls: the
    groups of a long job, the ranks of a sharded one)."""
    out = RerankReport(**{**a.__dict__, "per_query": {**a.per_query, **b.per_query},
                          "repairs": dict(a.repairs), "notes": dict(a.notes),
                          "repairs_per_query": {**a.repairs_per_query, **b.repairs_per_query}})
    for f in ("queries", "pairs_scored", "kept_below_depth", "empty_queries", "missing_docs",
              "missing_queries", "passages_truncated", "queries_truncated", "ties", "seconds"):
        setattr(out, f, getattr(a, f) + getattr(b, f))
    out.total = type(a.total)(**a.total.__dict__)
    out.total += b.total
    for k, v in b.repairs.items():
        out.repairs[k] = out.repairs.get(k, 0) + v
    return out
