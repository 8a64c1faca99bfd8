"""Re-ranking: score every (query, passage) pair of a Run with a model, write the re-ranked Run."""

from rankstack.rerank.base import Scorer
from rankstack.rerank.registry import SCORERS, register, scorer_class

__all__ = ["SCORERS", "Scorer", "register", "scorer_class"]
