"""Re-ranking: every family behind one protocol (:class:`RunReranker`), built from one spec.

>>> rr = load_reranker({"family": "cross-encoder", "model": "path/or/hub-id"})  # doctest: +SKIP
>>> new_run = rr.rerank(run, queries, docs, depth=100)                        # doctest: +SKIP
>>> rr.last_report.to_dict()                                                   # doctest: +SKIP
"""

from rankstack.rerank.base import RerankItem, RunReranker, Scorer
from rankstack.rerank.registry import (
    FAMILIES,
    SCORERS,
    families,
    register,
    register_family,
    scorer_class,
)
from rankstack.rerank.report import RerankReport, Usage
from rankstack.rerank.reranker import Reranker, RerankStats, rerank_dataset
from rankstack.rerank.spec import RerankerSpec, load_reranker, resolve_spec

__all__ = ["FAMILIES", "SCORERS", "RerankItem", "RerankReport", "RerankStats", "Reranker",
           "RerankerSpec", "RunReranker", "Scorer", "Usage", "families", "load_reranker",
           "register", "register_family", "rerank_dataset", "resolve_spec", "scorer_class"]
