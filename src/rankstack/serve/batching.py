"""Micro-batching: concurrent requests are gathered into one scorer call.

A single worker task takes the first queued request, then keeps gathering requests for up to
``max_wait_ms`` or until ``max_batch_pairs`` pairs / ``max_batch_requests`` requests are
collected, runs **one** ``score_pairs`` call in a dedicated thread (so the event loop keeps
accepting requests and the model is never called concurrently), and resolves each request's
future with its slice of the scores. ``max_batch_requests=1`` disables batching.

A request larger than ``max_batch_pairs`` is scored in chunks (unless ``split_requests`` is
False: then alone, whole) of at most ``max_batch_pairs``,
one after another, so other requests are served between its chunks and one large request
cannot hold the model for long. A request whose caller is cancelled (its client disconnected,
or its deadline passed: see :mod:`rankstack.serve.server`) stops there: its chunks not yet
scored are dropped, and counted in ``cancelled_requests`` / ``cancelled_pairs``. A chunk
already inside the model cannot be interrupted; it finishes and its scores are discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from rankstack.errors import ConfigError

ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass
class BatchStats:
    """Counters exposed by the service at ``GET /stats``."""

    batches: int = 0
    #: requests scored (a request scored in chunks counts once; the per-batch maxima count chunks)
    requests: int = 0
    pairs: int = 0
    max_requests_per_batch: int = 0
    max_pairs_per_batch: int = 0
    failed_batches: int = 0
    #: requests cancelled before all their scores were computed, and their pairs never scored
    cancelled_requests: int = 0
    cancelled_pairs: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_Item = tuple[list[str], list[str], asyncio.Future, bool]  # ..., first chunk of its request


class MicroBatcher:
    """Queue + worker(s) that turn concurrent ``score`` calls into batched ``score_fn`` calls.

    ``score_fn`` may be a list of functions, one per model copy (e.g. one scorer per worker
    process): each gets its own worker task and thread and takes the next batch as soon as
    it is free, so N copies score N batches at once and none waits while another batch is
    gathered or answered. A single function is never called concurrently.
    """

    def __init__(self, score_fn: ScoreFn | Sequence[ScoreFn], *, max_batch_pairs: int = 256,
                 max_wait_ms: float = 5.0, max_batch_requests: int | None = None,
                 split_requests: bool = True) -> None:
        if max_batch_pairs < 1:
            raise ConfigError(f"max_batch_pairs must be >= 1, got {max_batch_pairs}")
        if max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_batch_requests is not None and max_batch_requests < 1:
            raise ConfigError(f"max_batch_requests must be >= 1, got {max_batch_requests}")
        fns = list(score_fn) if isinstance(score_fn, Sequence) else [score_fn]
        if not fns or not all(callable(f) for f in fns):
            raise ConfigError("score_fn must be a function or a non-empty list of functions")
        self.score_fns = fns
        self.score_fn = fns[0]
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_requests = max_batch_requests
        #: False: a request is always scored whole (scores comparable only within one call,
        #: e.g. a listwise re-ranker), alone in its batch when over max_batch_pairs
        self.split_requests = split_requests
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task] = []
        self._carry: list[_Item | None] = [None] * len(fns)
        self._executors: list[ThreadPoolExecutor] = []

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        for w in range(len(self.score_fns)):
            self._executors.append(ThreadPoolExecutor(1, thread_name_prefix=f"rankstack-scorer{w}"))
            self._tasks.append(asyncio.create_task(self._worker(w),
                                                   name=f"rankstack-microbatcher-{w}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        pending = [c for c in self._carry if c is not None]
        self._carry = [None] * len(self.score_fns)
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for _, _, fut, _ in pending:
            if not fut.done():
                fut.set_exception(RuntimeError("service is shutting down"))
        for ex in self._executors:
            ex.shutdown(wait=True)
        self._executors = []

    async def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Scores of the pairs ``(queries[i], passages[i])``, computed in some batch."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if len(queries) != len(passages):
            raise ValueError("queries and passages differ in length")
        if not queries:
            return np.zeros(0, dtype=np.float32)
        loop = asyncio.get_running_loop()
        qs, ps, n = list(queries), list(passages), len(queries)
        step = self.max_batch_pairs if self.split_requests else n
        parts: list[np.ndarray] = []
        start = 0
        try:
            for start in range(0, n, step):
                fut = loop.create_future()
                await self._queue.put((qs[start:start + step], ps[start:start + step], fut,
                                       start == 0))
                parts.append(await fut)
        except asyncio.CancelledError:
            self.stats.cancelled_requests += 1
            # pairs after the current chunk; the current one is counted by the worker if it
            # is still queued, or is being scored
            self.stats.cancelled_pairs += max(0, n - start - step)
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _next(self, w: int, timeout: float | None) -> _Item | None:
        assert self._queue is not None
        if self._carry[w] is not None:
            item, self._carry[w] = self._carry[w], None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _gather(self, w: int) -> list[_Item]:
        loop = asyncio.get_running_loop()
        first = await self._next(w, None)
        assert first is not None
        batch, n = [first], len(first[0])
        deadline = loop.time() + self.max_wait
        while n < self.max_batch_pairs and (
                self.max_batch_requests is None or len(batch) < self.max_batch_requests):
            item = await self._next(w, deadline - loop.time())
            if item is None:
                break
            if n + len(item[0]) > self.max_batch_pairs:
                self._carry[w] = item  # first of this worker's next batch
                break
            batch.append(item)
            n += len(item[0])
        return batch

    async def _worker(self, w: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(w)
            live = [it for it in batch if not it[2].done()]
            self.stats.cancelled_pairs += sum(len(it[0]) for it in batch if it[2].done())
            if not live:
                continue
            qs = [q for it in live for q in it[0]]
            ps = [p for it in live for p in it[1]]
            try:
                scores = await loop.run_in_executor(self._executors[w], self._call, w, qs, ps)
            except Exception as exc:  # one bad batch fails its requests, not the service
                self.stats.failed_batches += 1
                for it in live:
                    if not it[2].done():
                        it[2].set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.requests += sum(1 for it in live if it[3])
            self.stats.pairs += len(qs)
            self.stats.max_requests_per_batch = max(self.stats.max_requests_per_batch, len(live))
            self.stats.max_pairs_per_batch = max(self.stats.max_pairs_per_batch, len(qs))
            start = 0
            for it in live:
                end = start + len(it[0])
                if not it[2].done():
                    it[2].set_result(scores[start:end])
                start = end

    def _call(self, w: int, qs: list[str], ps: list[str]) -> np.ndarray:
        scores = np.asarray(self.score_fns[w](qs, ps), dtype=np.float32).reshape(-1)
        if scores.shape[0] != len(qs):
            raise RuntimeError(f"scorer returned {scores.shape[0]} scores for {len(qs)} pairs")
        return scores
