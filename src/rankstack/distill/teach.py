"""Teacher generation: pool candidates from several first-stage runs, rank them with a teacher.

TWOLAR-style pooling: for each query, the union of the top-``depth`` candidates of every run,
de-duplicated. The teacher (any re-ranker with ``rerank(run, queries, docs)``; built from a spec by
:func:`rankstack.distill.teachers.load_teacher`) then ranks the whole pool; its per-chunk
reports (LLM calls, cache hits, tokens, repairs) are summed into the provenance. Output: a teacher Run (TREC file) plus a provenance JSON (teacher id, config hash,
input runs, counts).

Resumable: every finished query is appended to a journal (``<out>.journal.jsonl``, one JSON
line per query, flushed and fsynced). A rerun with the same config skips journaled queries; a
torn last line (killed mid-write) is discarded and that query redone. The journal of a
different config is refused rather than mixed. The final run is written atomically and the
journal removed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rankstack import __version__
from rankstack.config import config_hash
from rankstack.errors import ConfigError, InputError
from rankstack.io import atomic_write, write_run
from rankstack.io.journal import inputs_fingerprint
from rankstack.records import Doc, Query, Ranking, Run
from rankstack.rerank.report import RerankReport, add_reports  # noqa: F401 - re-export

if TYPE_CHECKING:
    from rankstack.rerank.predict import Ranks

log = logging.getLogger(__name__)


class Teacher(Protocol):
    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc]) -> Run: ...


@dataclass
class PoolStats:
    queries: int = 0
    pooled_pairs: int = 0
    #: per input run: how many of its candidates were new to the pool
    contributed: dict[str, int] = field(default_factory=dict)
    #: queries of the query set that no run retrieved anything for (kept out, counted)
    queries_without_candidates: list[str] = field(default_factory=list)
    #: candidates dropped because their doc id is not in the corpus
    docs_missing_from_corpus: int = 0


def pool_candidates(
    runs: Sequence[Run],
    depth: int | None,
    queries: Mapping[str, Query] | None = None,
    docs: Mapping[str, Doc] | None = None,
    on_missing_doc: str = "raise",
) -> tuple[Run, PoolStats]:
    """Union of each run's top-``depth`` per query, de-duplicated.

    Pooled score = minus the best (smallest) rank the doc reached in any run, so the pool is
    ordered by best rank, ties by doc id. Only queries in ``queries`` (if given) are pooled.
    A doc id not in ``docs`` (if given) raises InputError, or with ``on_missing_doc="skip"``
    is dropped and counted.
    """
    if not runs:
        raise ConfigError("pool_candidates needs at least one run")
    if on_missing_doc not in ("raise", "skip"):
        raise ConfigError(f"on_missing_doc must be 'raise' or 'skip', not {on_missing_doc!r}")
    stats = PoolStats()
    best: dict[str, dict[str, int]] = {}
    for run in runs:
        added = 0
        for qid, ranking in run.items():
            if queries is not None and qid not in queries:
                continue
            pool = best.setdefault(qid, {})
            for rank, d in enumerate(ranking.top(depth).docs, 1):
                if docs is not None and d.doc_id not in docs:
                    if on_missing_doc == "raise":
                        raise InputError(f"doc {d.doc_id!r} (query {qid}) of run {run.name!r} "
                                         f"is not in the corpus", field="doc_id")
                    stats.docs_missing_from_corpus += 1
                    continue
                if d.doc_id not in pool:
                    added += 1
                    pool[d.doc_id] = rank
                else:
                    pool[d.doc_id] = min(pool[d.doc_id], rank)
        stats.contributed[run.name] = added
    if queries is not None:
        stats.queries_without_candidates = sorted(q for q in queries if not best.get(q))
    pooled = Run(name="pool")
    for qid, pool in best.items():
        if pool:
            pooled.add(Ranking.from_scores(qid, {d: -float(r) for d, r in pool.items()}, "pool"))
    stats.queries = len(pooled)
    stats.pooled_pairs = pooled.n_pairs
    return pooled, stats


def subsample_pool(pooled: Run, top: int, extra: int = 0, seed: int = 0) -> Run:
    """Each query's first ``top`` pooled candidates plus ``extra`` drawn at random from the rest.

    A deep pool at a fraction of the teacher's cost: the teacher ranks the head of the
    first-stage ranking in full and a uniform sample of its tail (e.g. top 20 + 20 of ranks
    21-100), so a student sampling from the teacher's ranking sees passages from the whole
    depth it will re-rank. The draw of a query depends only on ``seed`` and its id (not on
    the other queries); the kept candidates stay in pool order. Queries with at most ``top``
    candidates are kept whole.
    """
    import random

    for name, v, low in (("pool_top", top, 1), ("pool_random", extra, 0), ("seed", seed, None)):
        if isinstance(v, bool) or not isinstance(v, int) or (low is not None and v < low):
            want = "an integer" if low is None else f"an integer >= {low}"
            raise ConfigError(f"{name} must be {want}, not {v!r}")
    out = Run(name=pooled.name)
    for qid, ranking in pooled.items():
        docs = list(ranking.docs)
        head, tail = docs[:top], docs[top:]
        if extra and tail:
            picked = set(random.Random(f"{seed}:{qid}").sample(range(len(tail)),
                                                               min(extra, len(tail))))
            head += [d for i, d in enumerate(tail) if i in picked]
        out.add(Ranking.from_scores(qid, {d.doc_id: d.score for d in head}, ranking.scorer))
    return out


@dataclass
class TeachResult:
    run: Run
    provenance: dict[str, Any]
    resumed_queries: int
    scored_queries: int
    #: the teacher's reports of this invocation, summed (None if it keeps none)
    report: RerankReport | None = None


def teach(
    teacher: Teacher,
    teacher_id: str,
    candidates: Run,
    queries: Mapping[str, Query],
    docs: Mapping[str, Doc],
    out: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    chunk_size: int = 8,
    show_progress: bool = True,
    ranks: Ranks | None = None,
) -> TeachResult | None:
    """Rank every query's candidates with ``teacher`` and write the teacher Run to ``out``.

    ``config`` (the teacher + pooling settings) is hashed into the provenance and guards the
    journal: resuming with a different config is an error. ``ranks``
    (:func:`rankstack.rerank.predict.launch`): shard the queries over Lightning ranks, each
    journaling its own (:func:`~rankstack.rerank.predict.rerank_sharded`, groups of
    ``chunk_size`` queries); rank 0 writes the run and returns the result, other ranks
    return None.
    """
    from rankstack.rerank.predict import rerank_sharded

    out = Path(out)
    cfg = {"teacher": teacher_id, **(dict(config) if config else {})}
    chash = config_hash(cfg)
    missing_text = [q for q in candidates if q not in queries]
    if missing_text:
        raise InputError(f"{len(missing_text)} candidate queries have no text "
                         f"(first: {missing_text[0]!r})", field="queries")
    # keyed by the inputs' content, not their paths: a replaced candidates file is noticed
    res = rerank_sharded(teacher, candidates, queries, docs,
                         journal=out.with_name(out.name + ".journal.jsonl"),
                         header={"rankstack_teach_journal": 2, "config_hash": chash,
                                 "teacher": teacher_id,
                                 "inputs": inputs_fingerprint(candidates, queries, docs)},
                         ranks=ranks, chunk_queries=chunk_size, chunk_pairs=1 << 62,
                         name=f"teacher-{chash[:8]}", show_progress=show_progress)
    if res.run is None:
        return None
    run = res.run
    provenance = {
        "teacher": teacher_id,
        "config": cfg,
        "config_hash": chash,
        "rankstack_version": __version__,
        "queries": len(run),
        "pairs": run.n_pairs,
        "resumed_queries": res.resumed_queries,
        "wall_time_s_this_invocation": round(res.seconds, 3),
        "ranks": res.world_size,
    }
    total = res.report
    if total is not None:
        t = total.to_dict()
        provenance["teacher_report_this_invocation"] = {
            k: t[k] for k in ("model", "score_kind", "queries", "pairs_scored",
                              "passages_truncated", "queries_truncated", "ties", "budgets",
                              "mode", "total", "repairs", "seconds", "pairs_per_second")}
    write_run(run, out)
    with atomic_write(out.with_name(out.name + ".provenance.json")) as fh:
        json.dump(provenance, fh, indent=2)
    res.remove_journals()
    return TeachResult(run, provenance, res.resumed_queries, res.scored_queries, total)


def pool_stats_dict(stats: PoolStats) -> dict[str, Any]:
    d = asdict(stats)
    d["queries_without_candidates"] = len(stats.queries_without_candidates)
    return d
