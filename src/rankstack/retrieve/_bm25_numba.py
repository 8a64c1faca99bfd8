"""The numba kernel of BM25 search: bm25s's scores, rankstack's tie-break, compiled once.

Why not ``bm25s.BM25.retrieve``: its jitted functions are compiled without ``cache=True``,
so every new process pays the numba compilation again (tens of seconds on a busy 2-core
machine), and its top-k picks arbitrary members of a score tie, which rankstack then has to
repair. This kernel reads the same index arrays (``data``/``indices``/``indptr`` of bm25s's
eager score matrix), accumulates each query's scores in exactly bm25s's order (so the float32
scores are bit-identical), and keeps the top ``k`` by the one rule (score desc, then doc id
asc, via ``id_rank``) in a heap. It is compiled with ``cache=True``: numba writes the machine
code next to this file (``__pycache__``) or, where that is not writable, to its user cache
(``NUMBA_CACHE_DIR`` overrides both), and later processes load it instead of compiling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

log = logging.getLogger("rankstack.retrieve.bm25")


def _jit(**options: Any) -> Callable[[Callable], Any]:
    """``njit(cache=True, **options)``; without a writable cache location (neither next to
    this file nor numba's user cache dir), ``cache=False`` with a warning: it then compiles
    once per process, as bm25s does."""
    def wrap(fn: Callable) -> Any:
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            log.warning("numba cannot cache the BM25 kernel (%s); it is compiled in every "
                        "process. Set NUMBA_CACHE_DIR to a writable directory.", exc)
            return njit(**options)(fn)
    return wrap


@_jit(nogil=True, inline="always")
def _worse(s_a: float, r_a: int, s_b: float, r_b: int) -> bool:
    """True when hit a ranks below hit b (lower score, or equal score and larger id rank)."""
    return s_a < s_b or (s_a == s_b and r_a > r_b)


@_jit(nogil=True)
def _sift_down(hs: np.ndarray, hr: np.ndarray, hi: np.ndarray, pos: int, n: int) -> None:
    # min-heap on "worse": the root is the worst hit kept so far
    s, r, i = hs[pos], hr[pos], hi[pos]
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and _worse(hs[right], hr[right], hs[child], hr[child]):
            child = right
        if _worse(hs[child], hr[child], s, r):
            hs[pos], hr[pos], hi[pos] = hs[child], hr[child], hi[child]
            pos = child
        else:
            break
    hs[pos], hr[pos], hi[pos] = s, r, i


@_jit(nogil=True)
def _sift_up(hs: np.ndarray, hr: np.ndarray, hi: np.ndarray, pos: int) -> None:
    s, r, i = hs[pos], hr[pos], hi[pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        if _worse(s, r, hs[parent], hr[parent]):
            hs[pos], hr[pos], hi[pos] = hs[parent], hr[parent], hi[parent]
            pos = parent
        else:
            break
    hs[pos], hr[pos], hi[pos] = s, r, i


@_jit(nogil=True)
def search_batch(flat: np.ndarray, ptr: np.ndarray, k: int, data: np.ndarray,
                 indptr: np.ndarray, indices: np.ndarray, num_docs: int,
                 id_rank: np.ndarray, nonocc: np.ndarray, use_nonocc: bool,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` hits (score > 0) of each query ``flat[ptr[q]:ptr[q+1]]`` (term ids).

    Returns ``(doc_index[nq, k], score[nq, k], count[nq])``; row ``q`` holds ``count[q]``
    hits in rank order (score desc, ``id_rank`` asc), the rest is padding.
    """
    nq = len(ptr) - 1
    out_i = np.zeros((nq, k), dtype=np.int64)
    out_s = np.zeros((nq, k), dtype=data.dtype)
    counts = np.zeros(nq, dtype=np.int64)
    scores = np.zeros(num_docs, dtype=data.dtype)
    touched = np.zeros(num_docs, dtype=np.int64)  # the docs whose score is non-zero
    stamp = np.zeros(num_docs, dtype=np.int64)
    hs = np.zeros(k, dtype=data.dtype)
    hr = np.zeros(k, dtype=np.int64)
    hi = np.zeros(k, dtype=np.int64)
    for q in range(nq):
        toks = flat[ptr[q]:ptr[q + 1]]
        n_touched = 0
        # bm25s's accumulation order (_compute_relevance_from_scores_jit_ready)
        for t in range(len(toks)):
            tid = toks[t]
            for j in range(indptr[tid], indptr[tid + 1]):
                d = indices[j]
                scores[d] += data[j]
                if stamp[d] != q + 1:
                    stamp[d] = q + 1
                    touched[n_touched] = d
                    n_touched += 1
        n = 0
        if use_nonocc:  # bm25l / bm25+: every doc gets the non-occurrence score
            extra = nonocc[toks].sum()  # as bm25s: float32, in the same order
            candidates = num_docs
        else:
            extra = nonocc[:0].sum()  # a float32 zero (keeps s float32)
            candidates = n_touched
        for c in range(candidates):
            d = c if use_nonocc else touched[c]
            s = scores[d] + extra if use_nonocc else scores[d]
            if not s > 0:
                continue
            r = id_rank[d]
            if n < k:
                hs[n], hr[n], hi[n] = s, r, d
                _sift_up(hs, hr, hi, n)
                n += 1
            elif _worse(hs[0], hr[0], s, r):
                hs[0], hr[0], hi[0] = s, r, d
                _sift_down(hs, hr, hi, 0, n)
        counts[q] = n
        # pop the worst to the back: row ends up best first
        m = n
        while m > 0:
            out_s[q, m - 1], out_i[q, m - 1] = hs[0], hi[0]
            m -= 1
            hs[0], hr[0], hi[0] = hs[m], hr[m], hi[m]
            _sift_down(hs, hr, hi, 0, m)
        for c in range(n_touched):
            scores[touched[c]] = 0
    return out_i, out_s, counts


def cache_stats() -> dict[str, int]:
    """numba's cache hits/misses of :func:`search_batch` in this process (misses = compiled)."""
    st = search_batch.stats
    return {"cache_hits": sum(st.cache_hits.values()),
            "cache_misses": sum(st.cache_misses.values())}


def run(retriever: Any, tids: list[list[int]], k: int, id_rank: np.ndarray,
        n_threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`search_batch` over a loaded ``bm25s.BM25`` for lists of term ids.

    ``n_threads`` > 1: the queries are split into that many contiguous parts, searched in
    threads at once (the kernel releases the GIL); results do not depend on it.
    """
    if n_threads > 1 and len(tids) > 1:
        from concurrent.futures import ThreadPoolExecutor

        parts = [p for p in np.array_split(np.arange(len(tids)), n_threads) if len(p)]
        with ThreadPoolExecutor(len(parts)) as pool:
            outs = list(pool.map(lambda p: _run(retriever, [tids[i] for i in p], k, id_rank),
                                 parts))
        return tuple(np.concatenate(x) for x in zip(*outs, strict=True))  # type: ignore[return-value]
    return _run(retriever, tids, k, id_rank)


def _run(retriever: Any, tids: list[list[int]], k: int, id_rank: np.ndarray,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sc = retriever.scores
    int_dtype = sc["indices"].dtype
    ptr = np.zeros(len(tids) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tids], out=ptr[1:])
    flat = np.fromiter((t for ts in tids for t in ts), dtype=int_dtype, count=int(ptr[-1]))
    nonocc = retriever.nonoccurrence_array
    use = nonocc is not None
    if not use:
        nonocc = np.zeros(1, dtype=sc["data"].dtype)
    return search_batch(flat, ptr, k, sc["data"], sc["indptr"], sc["indices"],
                        int(sc["num_docs"]), id_rank, np.asarray(nonocc), use)
