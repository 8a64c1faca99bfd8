"""The re-ranker protocol: :class:`Scorer` (pairs -> scores) and :class:`RunReranker` (Run -> Run).

A :class:`Scorer` maps (query text, passage text) pairs to one float per pair. Scores are
comparable only within one scorer; :attr:`Scorer.score_kind` states what they are (e.g.
``"logit"``, ``"log_prob"``, ``"cosine"``). Higher is always better.

A :class:`RunReranker` re-ranks a candidate :class:`~rankstack.records.Run`. Every family
(pointwise scorers, listwise and pointwise LLMs, PE-Rank, BM25, fusions) is one, and they
share the input policies implemented here once (each counted in the
:class:`~rankstack.rerank.report.RerankReport` kept on :attr:`RunReranker.last_report`):

* **depth**: only the top-``depth`` candidates of each query are re-ranked (``None``: all).
  Candidates below depth are kept after them in their input order; their scores are
  ``min(re-ranked scores) - 1, - 2, ...`` so they sort below every re-ranked one (scores of
  one Ranking stay comparable only in order). Counted as ``kept_below_depth``.
* **query with zero candidates**: kept as an empty Ranking (``empty_queries``).
* **doc id missing from the corpus** (``on_missing``): ``"raise"`` (default) an
  :class:`~rankstack.errors.InputError` naming query and doc before any model work;
  ``"skip"`` drops the doc from the output; ``"keep"`` keeps it right below the re-ranked
  docs in its input order. Both counted (``missing_docs``). A query id without text is an
  error, or with ``"skip"``/``"keep"`` its ranking is dropped (``missing_queries``).
* **empty run**: InputError (nothing to re-rank is almost always a wiring mistake).
* **ties**: re-ranked docs sharing their score with another of the same query are counted
  (``ties``); the Run orders them by doc id.
* **truncation**: passages/queries cut to a token budget are counted; when it may change
  results (any query, or over 5% of passages) a warning names the budget and how to raise it.

Long jobs resume: with ``journal=path`` each finished query is appended to a JSONL journal
(one record per query, committed after each group of ``chunk_pairs`` pairs); a re-run with the same journal re-ranks only the queries not recorded
there (the journal must come from the same re-ranker, depth and input *contents*: candidates,
query and passage texts; see :mod:`rankstack.io.journal`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from rankstack.errors import ConfigError, InputError
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc
from rankstack.rerank.report import RerankReport

log = logging.getLogger("rankstack.rerank")

OnMissing = Literal["raise", "skip", "keep"]
ON_MISSING = ("raise", "skip", "keep")


class Scorer(ABC):
    """Scores query-passage pairs. Implementations must return scores in input order."""

    #: registry key of the family (see :data:`rankstack.rerank.registry.SCORERS`)
    family: ClassVar[str]
    #: what a score is: "logit", "log_prob", "prob", "logit_diff", "cosine", "dot", ...
    score_kind: ClassVar[str]

    #: model id used as the ``scorer`` of produced Rankings
    name: str

    @abstractmethod
    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """``queries[i]`` pairs with ``passages[i]``; returns float32 scores of shape (n,)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sessions). Optional."""


@dataclass
class RerankItem:
    """One query's re-ranking job, after the input policies were applied."""

    qid: str
    query: str
    #: candidates to re-rank (top depth, present in the corpus), in input order
    ids: list[str] = field(default_factory=list)
    docs: list[Doc] = field(default_factory=list)
    #: below the re-ranked ones, in input order: missing docs kept ("keep"), then the tail
    kept: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [d.full_text for d in self.docs]


def check_depth(depth: Any) -> int | None:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ConfigError(f"depth must be a positive integer or None, not {depth!r}")
    return depth


def check_on_missing(on_missing: Any) -> OnMissing:
    if on_missing not in ON_MISSING:
        raise ConfigError(f"on_missing must be one of {', '.join(ON_MISSING)}, not {on_missing!r}")
    return on_missing


def short_name(name: str) -> str:
    return Path(name.rstrip("/")).name or name


#: settings that change only speed, resources or display, never a score (journal identity)
RUNTIME_SETTINGS = frozenset({"threads", "show_progress", "workers", "devices", "accelerator",
                              "strategy", "num_nodes", "chunk_pairs"})


class RunReranker(ABC):
    """Re-ranks a candidate Run; subclasses implement :meth:`_score_group` only.

    ``depth`` is the default of :meth:`rerank`; ``chunk_pairs`` bounds the pairs handed to
    :meth:`_score_group` at once (the journal commits after each group, one record per query).
    """

    #: what the produced scores are (per instance where a setting decides)
    score_kind: str = "unknown"
    #: the ``scorer`` of produced Rankings
    name: str = "reranker"
    #: log the report's warnings after each call (a caller that sums several calls, like
    #: ``teach``, turns this off and logs the summed report's :meth:`RerankReport.warnings`)
    warn: bool = True

    def __init__(self, *, depth: int | None = 100, on_missing: OnMissing = "raise",
                 show_progress: bool = True, chunk_pairs: int = 4096) -> None:
        self.depth = check_depth(depth)
        self.on_missing: OnMissing = check_on_missing(on_missing)
        self.show_progress = bool(show_progress)
        if isinstance(chunk_pairs, bool) or not isinstance(chunk_pairs, int) or chunk_pairs < 1:
            raise ConfigError(f"chunk_pairs must be a positive integer, not {chunk_pairs!r}")
        self.chunk_pairs = chunk_pairs
        self.last_report: RerankReport | None = None
        #: the jobs of the current / last :meth:`rerank` call (after the input policies)
        self.plan: list[RerankItem] = []

    # -- hooks ------------------------------------------------------------------------------
    @abstractmethod
    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        """Scores of each item's ``ids`` (higher is better), in item order; call
        ``advance(n)`` as ``n`` pairs are done. Usage counts go into ``report``."""

    def _begin(self, report: RerankReport) -> None:  # noqa: B027 - optional hook
        """Called once per :meth:`rerank` before any scoring (reset per-call counters)."""

    def _finish(self, report: RerankReport) -> None:  # noqa: B027 - optional hook
        """Called once per :meth:`rerank` after scoring (fill usage, truncation, budgets)."""

    def journal_identity(self) -> dict[str, Any]:
        """What must match for a journal to be resumed (the model and its output settings).

        The model id, plus the settings of the spec it was built from (``load_reranker``
        keeps it as ``self.spec``: dtype, budgets, pooling, template...), so a rerun with
        other settings is refused instead of merging stale rankings. Settings that change
        only speed or display (:data:`RUNTIME_SETTINGS`) are left out.
        """
        ident: dict[str, Any] = {"model": self.name}
        spec = getattr(self, "spec", None)
        if isinstance(getattr(spec, "settings", None), Mapping):
            ident["family"] = spec.family
            ident["settings"] = {k: v for k, v in sorted(spec.settings.items())
                                 if k not in RUNTIME_SETTINGS}
        return ident

    def _groups(self, pending: list[RerankItem]) -> Iterator[list[RerankItem]]:
        """Items in groups of about ``chunk_pairs`` pairs (length-sorted batching across the
        queries of a group is what makes encoder families fast: one query per group measured
        1.5x slower). Each query of a finished group is journaled as its own record; a
        smaller ``chunk_pairs`` commits more often."""
        group: list[RerankItem] = []
        n = 0
        for it in pending:
            group.append(it)
            n += len(it.ids)
            if n >= self.chunk_pairs:
                yield group
                group, n = [], 0
        if group:
            yield group

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, threads, sessions."""

    # -- the protocol -----------------------------------------------------------------------
    def rerank(self, run: Run, queries: Mapping[str, Query | str], docs: Mapping[str, Doc], *,
               depth: int | None = None, journal: str | os.PathLike[str] | None = None,
               max_queries: int | None = None) -> Run:
        """Re-rank ``run`` (policies: module doc); the report goes to :attr:`last_report`.

        ``depth`` overrides the re-ranker's default; ``max_queries`` keeps only the first N
        queries of the run; ``journal``: resume file (see module doc).
        """
        depth = self.depth if depth is None else check_depth(depth)
        if max_queries is not None and (isinstance(max_queries, bool)
                                        or not isinstance(max_queries, int) or max_queries < 1):
            raise ConfigError(f"max_queries must be a positive integer, not {max_queries!r}")
        if len(run) == 0:
            raise InputError(f"run {run.name!r} has no queries: nothing to re-rank")
        report = RerankReport(model=self.name, score_kind=self.score_kind, depth=depth)
        t0 = time.perf_counter()
        plan = self._plan(run, queries, docs, depth, max_queries, report)
        self.plan = plan  # this call's jobs (hooks may look at all of them)
        self._begin(report)

        done: dict[str, Ranking] = {}
        jr = None
        if journal is not None:
            from rankstack.io.journal import RankingJournal

            jr = RankingJournal(journal, {"rankstack_rerank_journal": 1,
                                          **self.journal_identity(), "depth": depth,
                                          "candidates": _fingerprint(plan)})
            done = jr.load()
            report.resumed_queries = sum(1 for it in plan if it.qid in done)
        pending = [it for it in plan if it.qid not in done]
        total = sum(len(it.ids) for it in pending)
        with contextlib.ExitStack() as stack:
            advance: Callable[[int], None] = lambda n: None  # noqa: E731
            if self.show_progress and total:
                from tqdm.auto import tqdm

                bar = stack.enter_context(tqdm(total=total, unit="pair",
                                               desc=f"re-ranking ({short_name(self.name)})"))
                advance = bar.update
            jw = stack.enter_context(jr.writer()) if jr is not None else None
            for group in self._groups(pending):
                scores = self._score_group(group, report, advance)
                if len(scores) != len(group):
                    raise RuntimeError(f"{self.name} returned {len(scores)} score lists for "
                                       f"{len(group)} queries")
                ranked = [self._assemble(it, s, report) for it, s in zip(group, scores,
                                                                         strict=True)]
                done.update((r.query_id, r) for r in ranked)
                if jw is not None:
                    for r in ranked:
                        jw.write_one(r)

        out = Run(name=f"{run.name}+{short_name(self.name)}")
        for it in plan:
            out.add(done[it.qid])
        report.ties = sum(_ties(done[it.qid], len(it.ids)) for it in plan)
        self._finish(report)
        report.seconds = time.perf_counter() - t0
        self.last_report = report
        log.info("%s", report.summary())
        if self.warn:
            for warning in report.warnings():
                log.warning("%s", warning)
        return out

    def rerank_with_stats(self, run: Run, queries: Mapping[str, Query | str],
                          docs: Mapping[str, Doc], depth: int | None = None, *,
                          journal: str | os.PathLike[str] | None = None
                          ) -> tuple[Run, RerankReport]:
        """:meth:`rerank`, also returning its report."""
        out = self.rerank(run, queries, docs, depth=depth, journal=journal)
        assert self.last_report is not None
        return out, self.last_report

    @property
    def last_stats(self) -> RerankReport | None:
        """The last report (former name)."""
        return self.last_report

    # -- the policies, once -----------------------------------------------------------------
    def _plan(self, run: Run, queries: Mapping[str, Query | str], docs: Mapping[str, Doc],
              depth: int | None, max_queries: int | None, report: RerankReport
              ) -> list[RerankItem]:
        """Apply the query/doc/depth policies to every query before any model work."""
        plan: list[RerankItem] = []
        qids = list(run.rankings)
        if max_queries is not None:
            qids = qids[:max_queries]
        for qid in qids:
            ranking = run[qid]
            q = queries.get(qid)
            if q is None:
                if self.on_missing == "raise":
                    raise InputError(f"query {qid!r} of run {run.name!r} has no text "
                                     f"(not in the queries)", field="query_id")
                report.missing_queries += 1
                continue
            report.queries += 1
            if len(ranking) == 0:
                report.empty_queries += 1
            head = ranking.docs if depth is None else ranking.docs[:depth]
            tail = [] if depth is None else ranking.docs[depth:]
            it = RerankItem(qid, q.text if isinstance(q, Query) else str(q))
            for sd in head:
                doc = docs.get(sd.doc_id)
                if doc is None:
                    self._missing(sd.doc_id, qid, report)
                    if self.on_missing == "keep":
                        it.kept.append(sd.doc_id)
                    continue
                it.ids.append(sd.doc_id)
                it.docs.append(doc)
            for sd in tail:
                if sd.doc_id not in docs:
                    self._missing(sd.doc_id, qid, report)
                    if self.on_missing != "keep":
                        continue
                it.tail.append(sd.doc_id)
            plan.append(it)
        return plan

    def _missing(self, doc_id: str, qid: str, report: RerankReport) -> None:
        if self.on_missing == "raise":
            raise InputError(f"doc {doc_id!r} (query {qid!r}) is not in the corpus",
                             field="doc_id")
        report.missing_docs += 1

    def _assemble(self, it: RerankItem, scores: Sequence[float], report: RerankReport) -> Ranking:
        """The one depth/tail policy: re-ranked head, then kept-missing and tail docs below."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(s) != len(it.ids):
            raise RuntimeError(f"{self.name} returned {len(s)} scores for {len(it.ids)} "
                               f"candidates of query {it.qid!r}")
        if not np.isfinite(s).all():
            bad = int(np.flatnonzero(~np.isfinite(s))[0])
            raise RuntimeError(f"{self.name} returned a non-finite score for doc "
                               f"{it.ids[bad]!r} of query {it.qid!r}")
        head = [ScoredDoc(d, float(x)) for d, x in zip(it.ids, s, strict=True)]
        floor = float(s.min()) if len(s) else 0.0
        below = it.kept + it.tail
        report.kept_below_depth += len(it.tail)
        return Ranking(it.qid, head + [ScoredDoc(d, floor - (i + 1))
                                       for i, d in enumerate(below)], self.name)


def split_scores(flat: Sequence[float], items: Sequence[RerankItem]) -> list[Sequence[float]]:
    """``flat`` (one score per pair, the items' pairs in order) cut into each item's scores."""
    out: list[Sequence[float]] = []
    pos = 0
    for it in items:
        out.append(flat[pos:pos + len(it.ids)])
        pos += len(it.ids)
    return out


def rank_scores(order: Sequence[int], n: int) -> list[float]:
    """Rank-derived scores for a listwise order (indices best first): ``n - position``."""
    out = [0.0] * n
    for pos, i in enumerate(order):
        out[i] = float(n - pos)
    return out


def _ties(ranking: Ranking, n_head: int) -> int:
    # the head is the n_head best-scored docs (the tail scores sit below its minimum)
    c = Counter(d.score for d in ranking.docs[:n_head])
    return sum(v for v in c.values() if v > 1)


def _fingerprint(plan: list[RerankItem]) -> str:
    """Content hash of the job's inputs (ids, order, query and passage texts; no paths)."""
    from rankstack.io.journal import content_hash

    return content_hash([[it.qid, it.query, it.ids, [d.full_text for d in it.docs],
                          it.kept + it.tail] for it in plan])
