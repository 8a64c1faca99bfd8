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
)
from rankstack.evaluate.measures import display_name, resolve_measure
from rankstack.evaluate.stats import (
    TestOutcome,
    holm,
    paired_t_test,
    paired_values,
    permutation_test,
)

__all__ = [
    "DEFAULT_MEASURES",
    "Comparison",
    "Evaluator",
    "RunResult",
    "SignificanceTest",
    "TestOutcome",
    "display_name",
    "evaluate",
    "holm",
    "paired_t_test",
    "paired_values",
    "permutation_test",
    "rank_scores",
    "resolve_measure",
]
