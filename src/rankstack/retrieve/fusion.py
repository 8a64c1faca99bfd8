"""Rank fusion of several Runs: reciprocal rank fusion and normalized score combination.

Methods
-------
``rrf``
    ``score(d) = sum_i w_i / (k + rank_i(d))`` over the runs ``i`` that retrieved ``d``
    (Cormack et al., 2009). Ranks are 1-based and taken in rankstack order (score desc, doc id
    asc), so ties in an input run are broken the same way everywhere.
``combsum`` / ``combmnz``
    Per query, each run's scores are normalized (``minmax`` to [0, 1], ``zscore`` to mean 0 and
    std 1, or ``none``), multiplied by the run weight and summed. CombMNZ multiplies the sum by
    the number of runs that retrieved the doc.

Policies (documented and counted in :class:`FusionStats`)
---------------------------------------------------------
* A query present in only some runs is fused over the runs that have it; the number of such
  queries is counted in ``FusionStats.partial_queries``.
* A doc that a run did not retrieve contributes nothing to RRF. For CombSUM/CombMNZ it gets
  ``missing="min"`` (default: the lowest normalized score that run gave for that query, i.e.
  "as bad as the worst retrieved doc"; for minmax this is 0, the classic CombSUM) or
  ``missing="zero"`` (classic CombSUM for any normalization).
* A run whose scores for a query are all equal gets 1.0 for minmax (every doc is that run's
  best) and 0.0 for zscore; counted in ``FusionStats.constant_rankings``.
* ``depth`` keeps only the top ``depth`` docs of each input run per query and truncates the
  fused ranking to ``depth``.

The fused Rankings' ``scorer`` names the method and its settings, e.g. ``rrf(k=60)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rankstack.errors import ConfigError
from rankstack.records import Ranking, Run, ScoredDoc

METHODS = ("rrf", "combsum", "combmnz")
NORMS = ("minmax", "zscore", "none")

Method = Literal["rrf", "combsum", "combmnz"]
Norm = Literal["minmax", "zscore", "none"]


@dataclass
class FusionStats:
    """Counts of the fusion policies that fired."""

    n_runs: int = 0
    n_queries: int = 0
    #: queries present in fewer than all runs
    partial_queries: int = 0
    #: for each partial query, how many runs had it
    partial_detail: dict[str, int] = field(default_factory=dict)
    #: (run index, query) rankings whose scores were all equal (normalization degenerate)
    constant_rankings: int = 0


def _check(runs: Sequence[Run], method: str, norm: str, k: float,
           weights: Sequence[float] | None, depth: int | None, missing: str) -> list[float]:
    if not runs:
        raise ConfigError("fusion needs at least one run")
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; use one of {', '.join(METHODS)}")
    if norm not in NORMS:
        raise ConfigError(f"unknown normalization {norm!r}; use one of {', '.join(NORMS)}")
    if missing not in ("min", "zero"):
        raise ConfigError(f"missing must be 'min' or 'zero', not {missing!r}")
    if not (isinstance(k, int | float) and math.isfinite(k) and k >= 0):
        raise ConfigError(f"rrf k must be a finite number >= 0, got {k!r}")
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    if weights is None:
        return [1.0] * len(runs)
    w = [float(x) for x in weights]
    if len(w) != len(runs):
        raise ConfigError(f"{len(w)} weights given for {len(runs)} runs")
    if not all(math.isfinite(x) for x in w):
        raise ConfigError(f"weights must be finite numbers, got {list(weights)}")
    return w


def normalize(ranking: Ranking, norm: Norm) -> tuple[dict[str, float], bool]:
    """Normalized scores of one ranking and whether its scores were all equal."""
    scores = ranking.scores()
    if not scores or norm == "none":
        return scores, False
    vals = list(scores.values())
    if norm == "minmax":
        lo, hi = min(vals), max(vals)
        if hi == lo:
            return {d: 1.0 for d in scores}, True
        return {d: (s - lo) / (hi - lo) for d, s in scores.items()}, False
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    if std == 0.0:
        return {d: 0.0 for d in scores}, True
    return {d: (s - mean) / std for d, s in scores.items()}, False


def fuse(
    runs: Sequence[Run],
    *,
    method: Method = "rrf",
    k: float = 60.0,
    norm: Norm = "minmax",
    weights: Sequence[float] | None = None,
    depth: int | None = None,
    missing: Literal["min", "zero"] = "min",
    name: str | None = None,
    stats: FusionStats | None = None,
) -> Run:
    """Fuse ``runs`` into one Run (see the module docstring for the exact rules).

    ``stats``, if given, is filled with the counts of the policies that fired.
    """
    w = _check(runs, method, norm, k, weights, depth, missing)
    st = stats if stats is not None else FusionStats()
    st.n_runs = len(runs)
    qids: list[str] = []
    seen: set[str] = set()
    for r in runs:
        for q in r:
            if q not in seen:
                seen.add(q)
                qids.append(q)
    st.n_queries = len(qids)
    scorer = f"rrf(k={k:g})" if method == "rrf" else f"{method}(norm={norm},missing={missing})"
    if weights is not None:
        scorer = scorer[:-1] + f",w={'/'.join(f'{x:g}' for x in w)})"
    out = Run(name=name or f"fused-{method}")
    for q in qids:
        present = [(i, r[q].top(depth)) for i, r in enumerate(runs) if q in r]
        if len(present) < len(runs):
            st.partial_queries += 1
            st.partial_detail[q] = len(present)
        fused: dict[str, float] = {}
        if method == "rrf":
            for i, ranking in present:
                for rank, d in enumerate(ranking.docs, 1):
                    fused[d.doc_id] = fused.get(d.doc_id, 0.0) + w[i] / (k + rank)
        else:
            normed: list[tuple[int, dict[str, float]]] = []
            for i, ranking in present:
                s, constant = normalize(ranking, norm)
                st.constant_rankings += int(constant)
                normed.append((i, s))
            all_docs = {d for _, s in normed for d in s}
            hits = dict.fromkeys(all_docs, 0)
            for i, s in normed:
                fill = (min(s.values()) if s else 0.0) if missing == "min" else 0.0
                for d in all_docs:
                    if d in s:
                        hits[d] += 1
                        v = s[d]
                    else:
                        v = fill
                    fused[d] = fused.get(d, 0.0) + w[i] * v
            if method == "combmnz":
                fused = {d: v * hits[d] for d, v in fused.items()}
        ranking = Ranking(q, [ScoredDoc(d, s) for d, s in fused.items()], scorer)
        out.add(ranking.top(depth))
    return out
