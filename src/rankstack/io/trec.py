"""TREC run files (6 columns) and qrels (4 columns)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from rankstack.errors import InputError
from rankstack.io._base import (
    ErrorPolicy,
    OnError,
    atomic_write,
    check_id,
    check_token,
    iter_lines,
    parse_float,
    parse_int,
)
from rankstack.records import Qrels, Ranking, Run, ScoredDoc

RUN_FIELDS = ("query_id", "Q0", "doc_id", "rank", "score", "tag")
QRELS_FIELDS = ("query_id", "iteration", "doc_id", "relevance")


def read_run(
    path: str | os.PathLike[str],
    *,
    scorer: str | None = None,
    on_error: OnError = "raise",
    skipped: list[InputError] | None = None,
) -> Run:
    """Read a TREC run: ``qid Q0 docid rank score tag``, whitespace separated.

    Checked per line: 6 columns, non-empty ids, integer rank, finite score, no repeated
    (query, doc). Order is re-derived from the scores with the rankstack tie-break; the rank
    column is validated but not trusted. The run name is the tag of the first line.
    """
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    per_query: dict[str, dict[str, float]] = {}
    tag = None
    for no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            cols = line.split()
            if len(cols) != 6:
                raise InputError(
                    f"expected 6 columns ({' '.join(RUN_FIELDS)}), found {len(cols)}",
                    path=path, line=no, field="columns",
                )
            qid = check_id(cols[0], path=path, line=no, field="query_id")
            did = check_id(cols[2], path=path, line=no, field="doc_id")
            parse_int(cols[3], path=path, line=no, field="rank")
            score = parse_float(cols[4], path=path, line=no, field="score")
            docs = per_query.setdefault(qid, {})
            if did in docs:
                raise InputError(
                    f"duplicate (query, doc) pair ({qid}, {did})", path=path, line=no, field="doc_id"
                )
            docs[did] = score
            tag = tag or cols[5]
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)
    name = tag or os.path.basename(os.fspath(path))
    return Run({q: Ranking.from_scores(q, d, scorer or name) for q, d in per_query.items()}, name)


def format_run_lines(run: Run, tag: str | None = None) -> Iterable[str]:
    tag = (tag or run.name or "rankstack").replace(" ", "_")
    check_token(tag, what="run tag", field="tag")
    for qid, ranking in run.rankings.items():
        check_token(qid, what="query id", field="query_id")
        for rank, d in enumerate(ranking.docs, 1):
            check_token(d.doc_id, what="doc id", field="doc_id")
            yield f"{qid} Q0 {d.doc_id} {rank} {d.score!r} {tag}\n"


def write_run(run: Run, path: str | os.PathLike[str], *, tag: str | None = None) -> None:
    """Write a TREC run atomically, ranks 1..n in rankstack order (score desc, doc id asc).

    Ids and the tag must be non-empty without whitespace (InputError otherwise). A query with
    an empty Ranking has no line: the format cannot hold it.
    """
    with atomic_write(path) as fh:
        for line in format_run_lines(run, tag):
            fh.write(line)


def read_qrels(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    skipped: list[InputError] | None = None,
) -> Qrels:
    """Read TREC qrels: ``qid iteration docid relevance`` with an integer grade.

    A repeated (query, doc) with the same grade is harmless and kept once; with a different
    grade it is an error (which grade is right cannot be known).
    """
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    judgments: dict[str, dict[str, int]] = {}
    for no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            cols = line.split()
            if len(cols) != 4:
                raise InputError(
                    f"expected 4 columns ({' '.join(QRELS_FIELDS)}), found {len(cols)}",
                    path=path, line=no, field="columns",
                )
            qid = check_id(cols[0], path=path, line=no, field="query_id")
            did = check_id(cols[2], path=path, line=no, field="doc_id")
            grade = parse_int(cols[3], path=path, line=no, field="relevance")
            q = judgments.setdefault(qid, {})
            if did in q and q[did] != grade:
                raise InputError(
                    f"conflicting grades {q[did]} and {grade} for ({qid}, {did})",
                    path=path, line=no, field="relevance",
                )
            q[did] = grade
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)
    return Qrels(judgments, name=os.path.basename(os.fspath(path)))


def write_qrels(qrels: Qrels, path: str | os.PathLike[str]) -> None:
    with atomic_write(path) as fh:
        for qid, docs in qrels.judgments.items():
            check_token(qid, what="query id", field="query_id")
            for did, grade in docs.items():
                check_token(did, what="doc id", field="doc_id")
                fh.write(f"{qid} 0 {did} {grade}\n")


__all__ = ["read_run", "write_run", "read_qrels", "write_qrels", "format_run_lines", "ScoredDoc"]
