"""Re-ranking: score every (query, passage) pair of a Run with a model, write the re-ranked Run."""

from rankstack.rerank.base import Scorer
from rankstack.rerank.registry import SCORERS, register, scorer_class
from rankstack.rerank.reranker import Reranker, RerankStats, rerank_dataset

__all__ = ["SCORERS", "RerankStats", "Reranker", "Scorer", "register", "rerank_dataset",
           "scorer_class"]
