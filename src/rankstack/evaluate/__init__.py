"""Evaluation: ir_measures measures as values, a reusable :class:`Evaluator`, paired tests.

See :mod:`rankstack.evaluate.evaluator` for the conventions (binary relevance threshold,
rank order and tie-break, missing-query policy).
"""

from rankstack.evaluate.evaluator import (
    DEFAULT_MEASURES,
    Comparison,
    Evaluator,
    RunResult,
    SignificanceTest,
    evaluate,
    rank_scores,
    resolve_measure,
)
from rankstack.evaluate.stats import TestOutcome, holm, paired_t_test, permutation_test

__all__ = [
    "DEFAULT_MEASURES",
    "Comparison",
    "Evaluator",
    "RunResult",
    "SignificanceTest",
    "TestOutcome",
    "evaluate",
    "holm",
    "paired_t_test",
    "permutation_test",
    "rank_scores",
    "resolve_measure",
]
