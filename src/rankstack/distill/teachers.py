"""Teachers for distillation: any re-ranker, or a fusion of several re-rankers' rankings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rankstack.records import Doc, Query, Run


@dataclass
class FusedTeacher:
    """Ranks with every member, then fuses the rankings (RRF by default).

    With ``include_candidates`` the incoming candidate Run (e.g. BM25 or the pool) is fused
    in as one more member, so lexical evidence can complement a neural teacher.
    """

    members: Sequence[object]
    method: str = "rrf"
    k: float = 60.0
    norm: str = "minmax"
    include_candidates: bool = False

    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc]) -> Run:
        from rankstack.retrieve.fusion import fuse

        runs = [m.rerank(run, queries, docs) for m in self.members]
        if self.include_candidates:
            runs.append(run)
        return fuse(runs, method=self.method, k=self.k, norm=self.norm, name="fused-teacher")


def load_teacher(model: str | Sequence[str] | None, family: str | Sequence[str] | None = None,
                 *, fusion: str | None = None, include_candidates: bool = False,
                 **settings) -> tuple[object, str]:
    """A teacher and its id. Several models (with ``fusion="rrf"|"combsum"``) make a FusedTeacher."""
    from rankstack.rerank.reranker import Reranker

    models = [model] if model is None or isinstance(model, str) else list(model)
    families = [family] * len(models) if family is None or isinstance(family, str) else list(family)
    settings = {k: v for k, v in settings.items() if v is not None}
    members = [Reranker.from_pretrained(m, family=f, **settings) for m, f in zip(models, families, strict=True)]
    if len(members) == 1 and not include_candidates:
        return members[0], members[0].name
    method = fusion or "rrf"
    teacher = FusedTeacher(members, method=method, include_candidates=include_candidates)
    ids = [m.name for m in members] + (["candidates"] if include_candidates else [])
    return teacher, f"{method}({'+'.join(ids)})"
