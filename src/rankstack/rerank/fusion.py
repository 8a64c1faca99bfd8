"""``family: fusion``: re-rank with every member, then fuse their rankings (RRF, CombSUM...).

A :class:`~rankstack.rerank.base.RunReranker` of its own: the protocol's policies (depth,
tail, missing docs, journal) apply once, to the fusion; every member re-ranks the same
re-ranked head (all of it: the fusion's depth governs) and the fused scores order it.
``include_candidates: true`` fuses the incoming candidate order in as one more member
(lexical evidence next to a neural teacher); as an order it enters rank-based methods
as is and score-based ones with rank-derived scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rankstack.errors import ConfigError
from rankstack.records import Ranking, Run
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker
from rankstack.rerank.report import RerankReport


class FusionReranker(RunReranker):
    """Fuses the rankings of ``members`` (see module doc)."""

    def __init__(self, members: Sequence[RunReranker], *, method: str = "rrf", k: float = 60.0,
                 norm: str = "minmax", weights: Sequence[float] | None = None,
                 include_candidates: bool = False, depth: int | None = 100,
                 on_missing: OnMissing = "raise", show_progress: bool = True,
                 chunk_pairs: int = 4096) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress,
                         chunk_pairs=chunk_pairs)
        if not members:
            raise ConfigError("fusion needs at least one member")
        self.members = list(members)
        self.method, self.k, self.norm = method, float(k), norm
        self.weights = list(weights) if weights is not None else None
        self.include_candidates = bool(include_candidates)
        n = len(self.members) + self.include_candidates
        if self.weights is not None and len(self.weights) != n:
            raise ConfigError(f"fusion weights: {len(self.weights)} given for {n} runs")
        ids = [m.name for m in self.members] + (["candidates"] if include_candidates else [])
        self.name = f"{method}({'+'.join(ids)})"
        self.score_kind = f"fused-{method}"
        if n < 2:
            raise ConfigError("fusion of one ranking: give two members or include_candidates")

    def journal_identity(self) -> dict[str, Any]:
        return {"model": self.name, "members": [m.journal_identity() for m in self.members],
                "method": self.method, "k": self.k, "norm": self.norm, "weights": self.weights}

    def _begin(self, report: RerankReport) -> None:
        self._member_reports: list[list[RerankReport]] = [[] for _ in self.members]

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        from rankstack.retrieve.fusion import fuse

        docs = {d.id: d for it in items for d in it.docs}
        queries = {it.qid: it.query for it in items}
        head = Run({it.qid: Ranking.from_order(it.qid, it.ids, "candidates") for it in items},
                   name="candidates")
        runs = []
        for i, m in enumerate(self.members):
            runs.append(m.rerank(head, queries, docs, depth=None))
            if m.last_report is not None:
                self._member_reports[i].append(m.last_report)
        if self.include_candidates:
            runs.append(head)
        fused = fuse(runs, method=self.method, k=self.k, norm=self.norm,  # type: ignore[arg-type]
                     weights=self.weights, name="fused")
        n = sum(len(it.ids) for it in items)
        report.pairs_scored += n
        advance(n)
        out: list[Sequence[float]] = []
        for it in items:
            scores = fused[it.qid].scores() if it.qid in fused else {}
            out.append([scores[d] for d in it.ids])
        return out

    def _finish(self, report: RerankReport) -> None:
        report.members = [_merge(rs) for rs in self._member_reports]
        report.mode = "fusion"
        report.settings = {"method": self.method, "k": self.k, "norm": self.norm,
                           "weights": self.weights,
                           "include_candidates": self.include_candidates}
        for r in report.members:
            report.total += r.total
            report.passages_truncated += r.passages_truncated
            report.queries_truncated += r.queries_truncated

    def close(self) -> None:
        for m in self.members:
            m.close()


def _merge(reports: list[RerankReport]) -> RerankReport:
    """One report for a member's calls over the groups of one fusion call."""
    if not reports:
        return RerankReport()
    out = RerankReport(model=reports[0].model, score_kind=reports[0].score_kind,
                       mode=reports[0].mode, backend=reports[0].backend,
                       template=reports[0].template, budgets=reports[0].budgets)
    for r in reports:
        for f in ("queries", "pairs_scored", "passages_truncated", "queries_truncated", "ties",
                  "seconds"):
            setattr(out, f, getattr(out, f) + getattr(r, f))
        out.total += r.total
        out.per_query.update(r.per_query)
        for k, v in r.repairs.items():
            out.repairs[k] = out.repairs.get(k, 0) + v
    return out


def build_fusion(spec: Any) -> FusionReranker:
    from rankstack.rerank.spec import load_reranker

    own = {"method", "k", "norm", "weights", "include_candidates", "depth", "on_missing",
           "show_progress", "chunk_pairs"}
    unknown = sorted(set(spec.settings) - own)
    if unknown:
        raise ConfigError(f"family 'fusion' does not take setting(s) {', '.join(unknown)}; it "
                          f"takes: {', '.join(sorted(own))} (member settings go in members)")
    if spec.model is not None or spec.backend is not None:
        raise ConfigError("family 'fusion' takes no model or backend (give them per member)")
    members = [load_reranker(m, where=f"fusion member {i}") for i, m in enumerate(spec.members)]
    return FusionReranker(members, **spec.settings)
