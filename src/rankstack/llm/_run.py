"""Plumbing shared by the listwise and pointwise LLM re-rankers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from rankstack.errors import ConfigError, InputError
from rankstack.records import Doc, Query, Ranking, Run

T = TypeVar("T")
R = TypeVar("R")


def select_queries(run: Run, queries: Mapping[str, Query], max_queries: int | None,
                   depth: int) -> list[str]:
    """Query ids to re-rank, in run order; every one must have text."""
    if depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    if max_queries is not None and max_queries < 1:
        raise ConfigError(f"max_queries must be >= 1, got {max_queries}")
    qids = list(run.rankings)
    if max_queries is not None:
        qids = qids[:max_queries]
    for q in qids:
        if q not in queries:
            raise InputError(f"query {q!r} of run {run.name!r} has no text", field="queries")
    return qids


def passage_texts(ranking: Ranking, docs: Mapping[str, Doc], depth: int) -> list[str]:
    out = []
    for d in ranking.docs[:depth]:
        doc = docs.get(d.doc_id)
        if doc is None:
            raise InputError(f"doc {d.doc_id!r} (query {ranking.query_id}) is not in the corpus",
                             field="docs")
        out.append(doc.full_text)
    return out


def map_maybe_parallel(fn: Callable[[T], R], items: Iterable[T], workers: int,
                       on_done: Callable[[], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]``, on a thread pool when ``workers > 1``; order kept."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            if on_done:
                on_done()
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, x) for x in items]
        results = []
        for f in futures:
            results.append(f.result())
            if on_done:
                on_done()
        return results
