"""Paired significance tests and the Holm-Bonferroni correction.

All tests are two-sided and paired by query: ``a`` and ``b`` hold one value per query in the
same order, and the statistic is the mean of ``a - b``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rankstack.errors import ConfigError

TESTS = ("t", "perm")


def paired_values(result, baseline, measure: str) -> tuple[list[str], list[float], list[float]]:
    """The queries both results (``RunResult``-like: ``.per_query[measure][qid]``) have a
    value for, with the two value lists in that order."""
    a, b = result.per_query[measure], baseline.per_query[measure]
    qids = [q for q in a if q in b]
    return qids, [a[q] for q in qids], [b[q] for q in qids]


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """A test's statistic and p-value (``nan`` when fewer than two pairs make it undefined)."""

    statistic: float
    p_value: float


def _deltas(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"paired test needs two equal-length 1-d sequences, got {x.shape} and {y.shape}")
    return x - y


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TestOutcome:
    """Student's paired t-test (``scipy.stats.ttest_rel``) of ``mean(a - b) != 0``.

    Identical inputs give ``t = 0, p = 1`` (scipy would answer nan: no variance). Constant
    non-zero deltas have no variance either: scipy's answer (inf / p = 0) is passed on.
    """
    from scipy import stats

    d = _deltas(a, b)
    if d.size < 2:
        return TestOutcome(math.nan, math.nan)
    if not np.any(d):
        return TestOutcome(0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy warns, returns inf
        res = stats.ttest_rel(a, b)
    return TestOutcome(float(res.statistic), float(res.pvalue))


def permutation_test(
    a: Sequence[float], b: Sequence[float], rounds: int = 10_000, seed: int = 0
) -> TestOutcome:
    """Paired randomization test: randomly flip the sign of each per-query delta.

    Under the null hypothesis the two systems are exchangeable per query, so each delta is
    equally likely to carry either sign. The p-value is the share of sign assignments whose
    ``|mean delta|`` is at least the observed one. With ``2**n <= rounds`` every assignment is
    enumerated (an exact p); otherwise ``rounds`` random ones are drawn (seeded) and
    ``p = (1 + hits) / (1 + rounds)``, which is never 0. Identical runs give ``p = 1``.
    """
    if rounds < 1:
        raise ConfigError(f"permutation rounds must be >= 1, not {rounds}")
    d = _deltas(a, b)
    n = d.size
    if n == 0:
        return TestOutcome(math.nan, math.nan)
    observed = abs(d.mean())
    # Relative tolerance so that float summation order cannot turn a tie into a miss.
    threshold = observed - 1e-12 * max(1.0, float(np.abs(d).sum()))
    if 2**n <= rounds:
        hits = 0
        total = 2**n
        bits = np.arange(total, dtype=np.int64)
        chunk = max(1, 1_000_000 // n)
        for start in range(0, total, chunk):
            rows = bits[start:start + chunk, None] >> np.arange(n, dtype=np.int64) & 1
            means = np.abs((1 - 2 * rows) @ d) / n
            hits += int(np.count_nonzero(means >= threshold))
        return TestOutcome(float(d.mean()), hits / total)
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 2_000_000 // n)
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / n
        hits += int(np.count_nonzero(means >= threshold))
    return TestOutcome(float(d.mean()), (1 + hits) / (1 + rounds))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; reject where adjusted p < alpha).

    Sorted ascending, the i-th smallest of m p-values (1-based) becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``. ``nan`` entries (undefined tests) stay
    ``nan`` and do not count in ``m``.
    """
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    out = [math.nan] * len(p_values)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def run_test(name: str, a: Sequence[float], b: Sequence[float], *, rounds: int = 10_000,
             seed: int = 0) -> TestOutcome:
    """Run the test called ``name`` (``t`` or ``perm``)."""
    if name == "t":
        return paired_t_test(a, b)
    if name == "perm":
        return permutation_test(a, b, rounds=rounds, seed=seed)
    raise ConfigError(f"unknown significance test {name!r}: use one of {', '.join(TESTS)}")
