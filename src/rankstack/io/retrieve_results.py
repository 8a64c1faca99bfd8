"""RankGPT / rank_llm "retrieve results" JSON, both ways.

``[{"query": str, "hits": [{"content", "qid", "docid", "rank", "score"}, ...]}, ...]``
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rankstack.errors import InputError
from rankstack.io._base import ErrorPolicy, OnError, atomic_write, read_bytes
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc

log = logging.getLogger("rankstack.io")


@dataclass
class Candidates:
    """Queries, the passages they retrieved (with text) and the first-stage run."""

    queries: dict[str, Query]
    docs: dict[str, Doc]
    run: Run


def read_retrieve_results(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    on_error: OnError = "raise",
    skipped: list[InputError] | None = None,
) -> Candidates:
    """Parse the JSON; errors name the file, the line where the query entry starts, and the
    ``[i].hits[j].field`` element path (``line`` of the error is that file line).
    """
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {exc.start})", path=path, line=line) from None
    data, lines = _decode_entries(text, path)
    queries: dict[str, Query] = {}
    docs: dict[str, Doc] = {}
    rankings: dict[str, Ranking] = {}
    run_name = name or os.path.basename(os.fspath(path)).removesuffix(".json")
    for i, (entry, eline) in enumerate(zip(data, lines, strict=True), 1):
        try:
            if not isinstance(entry, dict) or "query" not in entry or "hits" not in entry:
                raise InputError("expected an object with 'query' and 'hits'", path=path, line=eline,
                                 field=f"[{i - 1}]")
            hits = entry["hits"]
            if not isinstance(hits, list) or not hits:
                raise InputError("query has no candidates (empty 'hits')", path=path, line=eline,
                                 field=f"[{i - 1}].hits")
            qid = None
            scored: list[ScoredDoc] = []
            seen: set[str] = set()
            for j, h in enumerate(hits):
                loc = f"[{i - 1}].hits[{j}]"
                for k in ("qid", "docid", "score", "content"):
                    if not isinstance(h, dict) or k not in h:
                        raise InputError(f"missing '{k}'", path=path, line=eline, field=loc)
                if not all(isinstance(h[k], str | int) and not isinstance(h[k], bool)
                           for k in ("qid", "docid")):
                    raise InputError("qid and docid must be strings or integers", path=path,
                                     line=eline, field=loc)
                hq, did = str(h["qid"]), str(h["docid"])
                if not hq or not did:
                    raise InputError("empty id", path=path, line=eline, field=loc)
                if qid is None:
                    qid = hq
                elif hq != qid:
                    raise InputError(f"qid {hq!r} differs from the entry's {qid!r}", path=path,
                                     line=eline, field=f"{loc}.qid")
                score = h["score"]
                if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                    raise InputError(f"score must be a finite number, got {score!r}", path=path,
                                     line=eline, field=f"{loc}.score")
                if did in seen:
                    raise InputError(f"duplicate doc id {did!r}", path=path, line=eline,
                                     field=f"{loc}.docid")
                seen.add(did)
                if not isinstance(h["content"], str):
                    raise InputError("content must be a string", path=path, line=eline,
                                     field=f"{loc}.content")
                docs.setdefault(did, Doc(did, h["content"], h.get("title") or ""))
                scored.append(ScoredDoc(did, float(score)))
            assert qid is not None
            if qid in rankings:
                raise InputError(f"query {qid!r} appears twice", path=path, line=eline,
                                 field=f"[{i - 1}]")
            if not isinstance(entry["query"], str) or not entry["query"].strip():
                raise InputError("query text must be a non-empty string", path=path,
                                 line=eline, field=f"[{i - 1}].query")
            queries[qid] = Query(qid, entry["query"])
            rankings[qid] = Ranking(qid, scored, run_name)
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)
    return Candidates(queries, docs, Run(rankings, run_name))


def write_retrieve_results(
    run: Run,
    queries: Mapping[str, Query],
    docs: Mapping[str, Doc],
    path: str | os.PathLike[str],
) -> int:
    """Write a Run with query and passage text as retrieve-results JSON (atomically).

    Every doc id in the run must be in ``docs`` and every query in ``queries``. A query with
    an empty Ranking cannot be written (the format, and :func:`read_retrieve_results`, need
    at least one hit): it is left out, logged, and counted in the return value.
    """
    out = []
    empty: list[str] = []
    for qid, ranking in run.rankings.items():
        if not ranking.docs:
            empty.append(qid)
            continue
        if qid not in queries:
            raise InputError(f"query {qid!r} of the run has no text", field="queries")
        hits = []
        for rank, d in enumerate(ranking.docs, 1):
            if d.doc_id not in docs:
                raise InputError(f"doc {d.doc_id!r} (query {qid}) missing from the corpus",
                                 field="docs")
            hits.append({"content": docs[d.doc_id].full_text, "qid": _num_or_str(qid),
                         "docid": d.doc_id, "rank": rank, "score": d.score})
        out.append({"query": queries[qid].text, "hits": hits})
    with atomic_write(path) as fh:
        json.dump(out, fh, ensure_ascii=False, indent=1)
    if empty:
        log.warning("%s: left out %d query(ies) with an empty ranking: %s", path, len(empty),
                    ", ".join(empty[:10]))
    return len(empty)


def _decode_entries(text: str, path: str | os.PathLike[str]) -> tuple[list, list[int]]:
    """Decode the top-level list element by element to know the line each entry starts on."""
    dec = json.JSONDecoder()
    ws = " \t\n\r"

    def fail(msg: str, pos: int) -> InputError:
        return InputError(msg, path=path, line=text.count("\n", 0, pos) + 1)

    pos = len(text) - len(text.lstrip(ws + "\ufeff"))
    if not text.startswith("[", pos):
        if pos == len(text):
            raise fail("empty file: expected a JSON list of {query, hits} objects", pos)
        try:
            dec.decode(text)
        except json.JSONDecodeError as exc:
            raise fail(f"invalid JSON: {exc.msg}", exc.pos) from None
        except (ValueError, RecursionError) as exc:
            raise fail(f"invalid JSON: {type(exc).__name__}: {exc}", pos) from None
        raise fail("expected a JSON list of {query, hits} objects", pos)
    pos += 1
    entries: list = []
    lines: list[int] = []
    line, counted = 1, 0
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if text.startswith("]", pos) and not entries:
            pos += 1
            break
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(f"invalid JSON: {exc.msg}", exc.pos) from None
        except (ValueError, RecursionError) as exc:
            raise fail(f"invalid JSON: {type(exc).__name__}: {exc}", pos) from None
        line += text.count("\n", counted, pos)
        counted = pos
        entries.append(obj)
        lines.append(line)
        pos = end
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            pos += 1
            break
        else:
            raise fail("invalid JSON: expected ',' or ']' after a list element", pos)
    rest = text[pos:].lstrip(ws)
    if rest:
        raise fail("invalid JSON: extra data after the list", len(text) - len(rest))
    return entries, lines


def _num_or_str(qid: str) -> int | str:
    return int(qid) if qid.isdigit() and not (len(qid) > 1 and qid.startswith("0")) else qid
