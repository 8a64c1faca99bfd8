"""Topics files: ``qid<TAB>text`` per line, plain or gzipped."""

from __future__ import annotations

import os

from rankstack.errors import InputError
from rankstack.io._base import (
    ErrorPolicy,
    OnError,
    atomic_write,
    check_id,
    check_token,
    iter_lines,
)
from rankstack.records import Query


def read_topics(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    skipped: list[InputError] | None = None,
) -> dict[str, Query]:
    """Read ``qid<TAB>text`` lines. The text may itself contain tabs; it is kept whole."""
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    queries: dict[str, Query] = {}
    for no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            if "\t" not in line:
                raise InputError("expected 'query_id<TAB>text'", path=path, line=no, field="columns")
            qid, text = line.split("\t", 1)
            qid = check_id(qid.strip(), path=path, line=no, field="query_id")
            text = text.strip()
            if not text:
                raise InputError("empty query text", path=path, line=no, field="text")
            if qid in queries and queries[qid].text != text:
                raise InputError(f"query id {qid!r} repeated with different text",
                                 path=path, line=no, field="query_id")
            queries[qid] = Query(qid, text)
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)
    return queries


def write_topics(queries: dict[str, Query] | list[Query], path: str | os.PathLike[str]) -> None:
    """Write ``qid<TAB>text`` lines atomically; runs of whitespace in the text become one space."""
    items = queries.values() if isinstance(queries, dict) else queries
    with atomic_write(path) as fh:
        for q in items:
            check_token(q.id, what="query id", field="query_id")
            text = " ".join(q.text.split())
            if not text:
                raise InputError(f"query {q.id!r} has empty text", field="text")
            fh.write(f"{q.id}\t{text}\n")
