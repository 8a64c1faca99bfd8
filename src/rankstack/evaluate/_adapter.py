"""TEMPORARY: a re-ranker spec -> today's re-rankers, until ``rankstack.rerank.load_reranker``
lands (helper "protocol"); then this module is deleted and compare calls that instead.

A spec is a mapping: ``model``, ``family``, ``backend`` (LLM families), ``settings``.
Pointwise families go through :meth:`Reranker.from_pretrained`; ``llm-listwise`` and
``llm-pointwise`` through :mod:`rankstack.llm`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rankstack.errors import ConfigError
from rankstack.records import Doc, Query, Run

LLM_FAMILIES = {"llm-listwise": "listwise", "llm-pointwise": "pointwise"}
_LLM_RERANKER_KEYS = {"listwise": {"template", "window", "stride", "passes",
                                   "max_passage_tokens"},
                      "pointwise": {"template", "max_passage_tokens"}}


def known_families() -> list[str]:
    from rankstack.rerank.registry import SCORERS

    return sorted(set(SCORERS) | set(LLM_FAMILIES))


class SpecReranker:
    """One re-ranker built from a spec; ``rerank`` fills :attr:`last_report` (a dict)."""

    def __init__(self, spec: Mapping[str, Any], *, threads: int = 1,
                 cache_dir: str | None = None) -> None:
        family = spec.get("family")
        settings = dict(spec.get("settings") or {})
        self.mode = LLM_FAMILIES.get(str(family))
        self.last_report: dict[str, Any] = {}
        self._cache = None
        if self.mode is None:
            from rankstack.rerank.reranker import Reranker

            settings.setdefault("threads", threads)
            self.inner = Reranker.from_pretrained(spec.get("model"), family,
                                                  show_progress=False, **settings)
            self.score_kind = self.inner.score_kind
            return
        from rankstack.llm import (
            ListwiseLLMReranker,
            LLMCache,
            PointwiseLLMReranker,
            load_backend,
        )

        backend = spec.get("backend")
        if not backend:
            raise ConfigError(f"family {family!r} needs a 'backend' (hf, gguf, openai)")
        own = {k: settings.pop(k) for k in list(settings) if k in _LLM_RERANKER_KEYS[self.mode]}
        if backend in ("hf", "gguf"):
            settings.setdefault("threads", threads)
        self.backend = load_backend(str(backend), str(spec.get("model")), **settings)
        if cache_dir:
            self._cache = LLMCache(cache_dir)
        cls = ListwiseLLMReranker if self.mode == "listwise" else PointwiseLLMReranker
        own.setdefault("template", "rankzephyr" if self.mode == "listwise" else "yesno")
        self.inner = cls(self.backend, own.pop("template"), cache=self._cache,
                         show_progress=False, **own)
        self.score_kind = ("rank-derived" if self.mode == "listwise"
                           else "log_prob_diff")

    @property
    def name(self) -> str:
        return self.inner.name

    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc], *,
               depth: int | None = None, journal: str | os.PathLike[str] | None = None,
               use_cache: bool = True) -> Run:
        """Re-rank; ``journal`` resumes pointwise families, the LLM cache resumes LLMs."""
        if self.mode is None:
            out, stats = self.inner.rerank_with_stats(run, queries, docs, depth, journal=journal)
            d = stats.to_dict()
            self.last_report = {"pairs": d["pairs_scored"], "queries": d["queries"],
                                "seconds": d["seconds"], "details": d}
            return out
        saved = self.inner.cache
        if not use_cache:
            self.inner.cache = None
        try:
            out = self.inner.rerank(run, queries, docs, depth=depth or 100)
            report = self.inner.last_report
        finally:
            self.inner.cache = saved
        d = report.to_dict()
        d.pop("per_query", None)
        d.pop("repairs_per_query", None)
        tot = d["total"]
        pairs = sum(min(len(run[q]), depth or 100) for q in out)
        self.last_report = {"pairs": pairs, "queries": len(out), "seconds": d["wall_s"],
                            "llm_calls": tot["calls"], "cache_hits": tot["cache_hits"],
                            "prompt_tokens": tot["prompt_tokens"],
                            "completion_tokens": tot["completion_tokens"], "details": d}
        return out

    def close(self) -> None:
        if self.mode is None:
            self.inner.close()
            return
        self.backend.close()
        if self._cache is not None:
            self._cache.close()


def load_reranker(spec: Mapping[str, Any], *, threads: int = 1,
                  cache_dir: str | None = None) -> SpecReranker:
    family = spec.get("family")
    if family is not None and family not in known_families():
        raise ConfigError(f"unknown re-ranker family {family!r}; known: "
                          f"{', '.join(known_families())}")
    return SpecReranker(spec, threads=threads, cache_dir=cache_dir)
