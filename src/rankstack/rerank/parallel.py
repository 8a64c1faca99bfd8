"""Process-parallel scoring: N worker processes, each with its own 1-thread copy of a scorer.

On small CPUs torch's intra-op threading scales badly (2 threads measured slower than 1 for
MiniLM bf16 on a 2-core machine), so :class:`ParallelScorer` gets throughput from processes:
``workers`` processes (``spawn`` context: never fork after torch is loaded) each build the
same scorer once with ``threads=1`` (or the ``threads`` setting: threads *per worker*) and
serve score requests over a pipe.

:meth:`ParallelScorer.score_pairs` sorts the pairs by text length (query + passage
characters, longest first), cuts that order into ``workers`` contiguous shards of about equal
total length (so each worker's own length-sorted batching pads as little as one process
would), scores the shards concurrently and returns the scores in input order. Batches are
formed per shard, so fp32 scores match the single-process scorer up to padding round-off
(within 1e-6 in the tests).

Truncation counts (:attr:`ParallelScorer.counts`) are the sum of the workers' cumulative
counts, refreshed with every answer, so :class:`~rankstack.rerank.reranker.Reranker` stats
stay exact.

Failures never hang: loading waits at most ``load_timeout`` seconds; while waiting for
answers the worker processes are watched (a dead worker is noticed at once) and an optional
``timeout`` bounds each request. A worker's exception, or its death, raises
:class:`WorkerError` (a :class:`~rankstack.errors.RankstackError`) naming the worker, its
exception type and message; a dead or timed-out worker shuts the whole pool down.
:meth:`close` stops the workers; it also runs when the scorer is garbage collected and at exit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import time
import traceback
import weakref
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from rankstack.errors import ConfigError, RankstackError
from rankstack.rerank.base import Scorer
from rankstack.rerank.tokens import TruncationCounts

log = logging.getLogger("rankstack.rerank")


class WorkerError(RankstackError):
    """A scoring worker process failed (an exception in it, its death, or a timeout)."""

    def __init__(self, message: str, *, worker: int, exc_type: str | None = None,
                 remote_traceback: str | None = None) -> None:
        self.worker = worker
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------


def _counts_tuple(scorer: Any) -> tuple[int, int, int] | None:
    c = getattr(scorer, "counts", None)
    if c is None:
        return None
    return (int(getattr(c, "queries", 0)), int(getattr(c, "passages", 0)),
            int(getattr(c, "encoded", 0)))


def _error_message(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc), traceback.format_exc()


def _worker_main(conn: Connection, family: str, model: str, settings: dict[str, Any],
                 threads: int) -> None:
    """Build the scorer once, then answer ``("score", queries, passages, batch_size)``
    requests until ``("close",)`` or the parent goes away."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts us down
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(max(threads, 1))
    try:
        import torch

        torch.set_num_threads(max(threads, 1))
        # RuntimeError: already set (torch used by the parent's main module at import)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        from rankstack.rerank.registry import scorer_class

        cls_ = scorer_class(family)
        load = getattr(cls_, "from_pretrained", cls_)
        scorer = load(model, threads=threads, **settings)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error",) + _error_message(exc))
        conn.close()
        return
    conn.send(("ready", scorer.name, scorer.family, scorer.score_kind, _counts_tuple(scorer)))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # parent gone
            if msg[0] == "close":
                break
            _, queries, passages, batch_size = msg
            try:
                if batch_size is not None and hasattr(scorer, "batch_size"):
                    scorer.batch_size = batch_size
                s = np.asarray(scorer.score_pairs(queries, passages), dtype=np.float32)
                conn.send(("ok", s.reshape(-1), _counts_tuple(scorer)))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
                conn.send(("error",) + _error_message(exc))
    finally:
        scorer.close()
        conn.close()


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


def shard_by_length(lengths: Sequence[int] | np.ndarray, workers: int) -> list[np.ndarray]:
    """Indices of ``lengths`` sorted longest first, cut into ``workers`` contiguous shards of
    about equal total length (some may be empty when there are fewer items than workers)."""
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    order = np.argsort(-lens, kind="stable")
    if workers <= 1 or len(order) == 0:
        return [order]
    cum = np.cumsum(lens[order] + 1)  # +1: every pair costs something, even empty text
    total = cum[-1]
    cuts = np.searchsorted(cum, total * np.arange(1, workers) / workers, side="left") + 1
    cuts = np.minimum(cuts, len(order))
    return np.split(order, cuts)


def _shutdown(procs: list[Any], conns: list[Connection], grace: float = 5.0) -> None:
    """Ask every worker to stop, then terminate / kill the ones that do not."""
    for c in conns:
        with contextlib.suppress(OSError, ValueError):
            c.send(("close",))
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join(1.0)
    for c in conns:
        with contextlib.suppress(OSError):
            c.close()
    for p in procs:
        with contextlib.suppress(ValueError):
            p.close()


class ParallelScorer(Scorer):
    """Scores with ``workers`` processes, each holding its own copy of a ``family`` scorer.

    ``settings`` are the scorer's settings (as for ``Reranker.from_pretrained``); ``threads``
    there means threads *per worker* (default 1). ``start_method``: ``spawn`` (default) or
    ``forkserver``. ``load_timeout``: seconds to wait for every worker to load its model;
    ``timeout``: seconds one :meth:`score_pairs` call may take (``None``: no limit, but a
    dead worker is still noticed at once). Same ``name``, ``family`` and ``score_kind`` as
    the wrapped scorer.
    """

    family = ""
    score_kind = ""

    def __init__(self, family: str, model: str, *, workers: int = 2,
                 settings: Mapping[str, Any] | None = None, start_method: str = "spawn",
                 load_timeout: float = 600.0, timeout: float | None = None) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}")
        if start_method not in ("spawn", "forkserver"):
            raise ConfigError(f"start_method must be 'spawn' or 'forkserver' (never fork after "
                              f"torch is loaded), not {start_method!r}")
        from rankstack.hf_loading import check_model_path
        from rankstack.rerank.registry import scorer_class

        scorer_class(family)  # unknown family: ConfigError here, not in every worker
        check_model_path(model)  # a local path that does not exist: ConfigError before spawning
        settings = dict(settings or {})
        threads = int(settings.pop("threads", 1) or 1)
        self.family = family
        self.model = model
        self.workers = workers
        self.timeout = timeout
        self._batch_size: int | None = settings.get("batch_size")
        self._closed = False
        ctx = mp.get_context(start_method)
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns)
        for i in range(workers):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_worker_main, name=f"rankstack-scorer-{i}", daemon=True,
                            args=(child, family, model, settings, threads))
            p.start()
            child.close()
            self._procs.append(p)
            self._conns.append(parent)
        self._counts: list[tuple[int, int, int] | None] = [None] * workers
        try:
            ready = self._collect(list(range(workers)), load_timeout, "loading")
        except BaseException:
            self.close()
            raise
        first = ready[0]
        self.name, self.score_kind = first[1], first[3]
        for i, msg in enumerate(ready):
            self._counts[i] = msg[4]
            if (msg[1], msg[3]) != (self.name, self.score_kind):  # pragma: no cover - defensive
                self.close()
                raise WorkerError(f"worker {i} loaded {msg[1]} ({msg[3]}), worker 0 "
                                  f"{self.name} ({self.score_kind})", worker=i)
        log.info("%s: %d scoring workers ready (%d thread(s) each)", model, workers, threads)

    # -- settings the Reranker sets ----------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = value  # sent with the next request

    @property
    def counts(self) -> TruncationCounts | None:
        """Sum of the workers' cumulative truncation counts (None if the family has none)."""
        if any(c is None for c in self._counts):
            return None
        out = TruncationCounts()
        for q, p, e in self._counts:  # type: ignore[misc]
            out.queries += q
            out.passages += p
            out.encoded += e
        return out

    @property
    def pids(self) -> list[int | None]:
        """The worker processes' ids."""
        return [p.pid for p in self._procs] if not self._closed else []

    # -- scoring -----------------------------------------------------------------------------
    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        if self._closed:
            raise RankstackError(f"parallel scorer {self.name} is closed")
        n = len(queries)
        if n == 0:
            return np.zeros((0,), dtype=np.float32)
        lengths = [len(q) + len(p) for q, p in zip(queries, passages, strict=True)]
        shards = shard_by_length(lengths, self.workers)
        try:
            return self._score_shards(queries, passages, shards)
        except WorkerError:
            raise  # the pool is either drained (usable) or already shut down
        except BaseException:
            # e.g. KeyboardInterrupt: answers may still be in flight, so the pipes cannot be
            # trusted for the next request
            self.close()
            raise

    def _score_shards(self, queries: Sequence[str], passages: Sequence[str],
                      shards: list[np.ndarray]) -> np.ndarray:
        busy: list[int] = []
        for i, idx in enumerate(shards):
            if len(idx) == 0:
                continue
            try:
                self._conns[i].send(("score", [queries[j] for j in idx],
                                     [passages[j] for j in idx], self._batch_size))
            except (OSError, ValueError) as exc:
                self._collect(busy, self.timeout, "scoring", fatal=True)
                self._fail(WorkerError(f"cannot send work to scoring worker {i} "
                                       f"({self._describe(i)}): {exc}", worker=i))
            busy.append(i)
        answers = self._collect(busy, self.timeout, "scoring")
        out = np.empty(len(queries), dtype=np.float32)
        for i, msg in zip(busy, answers, strict=True):
            s = msg[1]
            if len(s) != len(shards[i]):
                raise WorkerError(f"scoring worker {i} returned {len(s)} scores for "
                                  f"{len(shards[i])} pairs", worker=i)
            out[shards[i]] = s
            self._counts[i] = msg[2]
        return out

    def _describe(self, i: int) -> str:
        p = self._procs[i]
        try:
            alive = p.is_alive()
        except ValueError:
            return "closed"
        return f"pid {p.pid}, " + ("alive" if alive else f"exit code {p.exitcode}")

    def _fail(self, err: WorkerError) -> None:
        self.close()
        raise err

    def _collect(self, busy: list[int], timeout: float | None, what: str,
                 fatal: bool = False) -> list[tuple]:
        """One answer from each worker in ``busy`` (in that order). Raises WorkerError on a
        worker's exception (after draining the others, so the pool stays usable), and on a
        dead worker or a timeout (after shutting the pool down)."""
        answers: dict[int, tuple] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = set(busy)
        gone: set[int] = set()  # pipe closed without an answer
        while waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            objs: list[Any] = [self._conns[i] for i in waiting if i not in gone]
            objs += [self._procs[i].sentinel for i in waiting]
            wait(objs, timeout=1.0 if left is None else min(left, 1.0))
            for i in sorted(waiting - gone):
                c = self._conns[i]
                try:
                    if not c.poll():
                        continue
                    answers[i] = c.recv()
                except (EOFError, OSError):
                    gone.add(i)
                    continue
                waiting.discard(i)
                if answers[i][0] == "error" and what == "loading" and not fatal:
                    self._fail(self._worker_error(i, answers[i], what))
            for i in sorted(waiting):
                p = self._procs[i]
                if i in gone or not p.is_alive():
                    p.join(2.0)
                    if fatal:
                        return []
                    self._fail(WorkerError(
                        f"scoring worker {i} (pid {p.pid}) died (exit code {p.exitcode}) "
                        f"while {what} {self.model!r}; the pool was shut down", worker=i))
            if deadline is not None and waiting and time.monotonic() >= deadline:
                if fatal:
                    return []
                self._fail(WorkerError(
                    f"scoring workers {sorted(waiting)} gave no answer within {timeout:g}s "
                    f"while {what} {self.model!r}; the pool was shut down",
                    worker=min(waiting)))
        errors = [(i, answers[i]) for i in busy if answers[i][0] == "error"]
        if errors and not fatal:
            raise self._worker_error(*errors[0], what)
        return [answers[i] for i in busy]

    def _worker_error(self, i: int, msg: tuple, what: str) -> WorkerError:
        _, exc_type, message, tb = msg
        log.debug("scoring worker %d traceback:\n%s", i, tb)
        return WorkerError(f"scoring worker {i} failed while {what} {self.model!r}: "
                           f"{exc_type}: {message}", worker=i, exc_type=exc_type,
                           remote_traceback=tb)

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> ParallelScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
