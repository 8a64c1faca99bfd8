"""Teachers for distillation: any re-ranker spec, including fusions of several re-rankers.

A teacher is a :class:`~rankstack.rerank.base.RunReranker` built by
:func:`rankstack.rerank.load_reranker` from one spec (``family: llm-listwise`` for a
Rank-DistiLLM teacher, ``family: fusion`` with ``members`` for a fused one). Teachers rank
the whole pool by default (``depth: None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rankstack.rerank.base import RunReranker
from rankstack.rerank.fusion import FusionReranker

#: the former name of the fused teacher
FusedTeacher = FusionReranker


def teacher_spec(spec: Mapping[str, Any] | None = None, *,
                 model: str | Sequence[str] | None = None,
                 family: str | Sequence[str] | None = None, fusion: str | None = None,
                 include_candidates: bool = False, **settings: Any) -> dict[str, Any]:
    """A teacher spec: ``spec`` as given, or one built from model(s)/family(ies) (several
    models make a fusion, ``fusion="rrf"|"combsum"``). ``settings`` go to every member."""
    settings = {k: v for k, v in settings.items() if v is not None}
    if spec is not None:
        out = dict(spec)
        if settings:
            out["settings"] = {**settings, **dict(out.get("settings") or {})}
    else:
        models = [model] if model is None or isinstance(model, str) else list(model)
        families = ([family] * len(models) if family is None or isinstance(family, str)
                    else list(family))
        members = [{"model": m, "family": f, "settings": dict(settings)}
                   for m, f in zip(models, families, strict=True)]
        if len(members) == 1 and not include_candidates:
            out = members[0]
        else:
            out = {"family": "fusion", "members": members,
                   "settings": {"method": fusion or "rrf",
                                "include_candidates": include_candidates}}
    out.setdefault("settings", {})
    out["settings"] = {"depth": None, **out["settings"]}  # the whole pool
    return out


def load_teacher(model: str | Sequence[str] | None = None,
                 family: str | Sequence[str] | None = None, *,
                 spec: Mapping[str, Any] | None = None, fusion: str | None = None,
                 include_candidates: bool = False, **settings: Any) -> tuple[RunReranker, str]:
    """A teacher and its id (its name): see :func:`teacher_spec`."""
    from rankstack.rerank.spec import load_reranker

    teacher = load_reranker(teacher_spec(spec, model=model, family=family, fusion=fusion,
                                         include_candidates=include_candidates, **settings),
                            where="teacher")
    return teacher, teacher.name
