"""RankGPT / rank_llm "retrieve results" JSON, both ways.

``[{"query": str, "hits": [{"content", "qid", "docid", "rank", "score"}, ...]}, ...]``
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rankstack.errors import InputError
from rankstack.io._base import ErrorPolicy, OnError, atomic_write, open_text
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc


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
    """Parse the JSON; errors name the file and the ``[query i].hits[j].field`` location.

    JSON has no useful line numbers once parsed, so the location is the element path; the
    ``line`` attribute of errors holds the 1-based query entry index.
    """
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    with open_text(path) as fh:
        raw = fh.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("not valid UTF-8", path=path, line=line) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, list):
        raise InputError("expected a JSON list of {query, hits} objects", path=path, line=1)
    queries: dict[str, Query] = {}
    docs: dict[str, Doc] = {}
    rankings: dict[str, Ranking] = {}
    run_name = name or os.path.basename(os.fspath(path)).removesuffix(".json")
    for i, entry in enumerate(data, 1):
        try:
            if not isinstance(entry, dict) or "query" not in entry or "hits" not in entry:
                raise InputError("expected an object with 'query' and 'hits'", path=path, line=i,
                                 field=f"[{i - 1}]")
            hits = entry["hits"]
            if not isinstance(hits, list) or not hits:
                raise InputError("query has no candidates (empty 'hits')", path=path, line=i,
                                 field=f"[{i - 1}].hits")
            qid = None
            scored: list[ScoredDoc] = []
            seen: set[str] = set()
            for j, h in enumerate(hits):
                loc = f"[{i - 1}].hits[{j}]"
                for k in ("qid", "docid", "score", "content"):
                    if not isinstance(h, dict) or k not in h:
                        raise InputError(f"missing '{k}'", path=path, line=i, field=loc)
                hq, did = str(h["qid"]), str(h["docid"])
                if not hq or not did:
                    raise InputError("empty id", path=path, line=i, field=loc)
                if qid is None:
                    qid = hq
                elif hq != qid:
                    raise InputError(f"qid {hq!r} differs from the entry's {qid!r}", path=path,
                                     line=i, field=f"{loc}.qid")
                score = h["score"]
                if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                    raise InputError(f"score must be a finite number, got {score!r}", path=path,
                                     line=i, field=f"{loc}.score")
                if did in seen:
                    raise InputError(f"duplicate doc id {did!r}", path=path, line=i,
                                     field=f"{loc}.docid")
                seen.add(did)
                if not isinstance(h["content"], str):
                    raise InputError("content must be a string", path=path, line=i,
                                     field=f"{loc}.content")
                docs.setdefault(did, Doc(did, h["content"], h.get("title") or ""))
                scored.append(ScoredDoc(did, float(score)))
            assert qid is not None
            if qid in rankings:
                raise InputError(f"query {qid!r} appears twice", path=path, line=i,
                                 field=f"[{i - 1}]")
            queries[qid] = Query(qid, str(entry["query"]))
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
) -> None:
    """Write a Run with query and passage text as retrieve-results JSON (atomically).

    Every doc id in the run must be in ``docs`` and every query in ``queries``.
    """
    out = []
    for qid, ranking in run.rankings.items():
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


def _num_or_str(qid: str) -> int | str:
    return int(qid) if qid.isdigit() and not (len(qid) > 1 and qid.startswith("0")) else qid
