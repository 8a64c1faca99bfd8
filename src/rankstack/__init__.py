"""rankstack: multi-stage passage ranking with LLM re-rankers and the cross-encoders distilled from them.

The main entry points are importable from the top level; heavy ones load lazily, so
``import rankstack`` does not import torch::

    from rankstack import load_dataset, Reranker, Evaluator
    ds = load_dataset("dl19")
    run = Reranker.from_pretrained().rerank(ds.run, ds.queries, ds.docs)
    print(Evaluator(["nDCG@10"], ds.qrels).evaluate(run).aggregates)
"""

from __future__ import annotations

import importlib
from typing import Any

from rankstack.errors import ConfigError, InputError, MissingDependencyError, RankstackError
from rankstack.records import Doc, Qrels, Query, Ranking, Run, ScoredDoc, rank_key

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "load_dataset": "rankstack.datasets",
    "Dataset": "rankstack.datasets",
    "DATASETS": "rankstack.datasets",
    "BM25Index": "rankstack.retrieve.bm25",
    "DenseIndex": "rankstack.retrieve.dense",
    "fuse": "rankstack.retrieve.fusion",
    "Reranker": "rankstack.rerank.reranker",
    "load_reranker": "rankstack.rerank.spec",
    "RunReranker": "rankstack.rerank.base",
    "Evaluator": "rankstack.evaluate.evaluator",
    "teach": "rankstack.distill.teach",
    "pool_candidates": "rankstack.distill.teach",
    "TrainConfig": "rankstack.train.fit",
    "fit": "rankstack.train.fit",
}

__all__ = [
    "ConfigError", "Doc", "InputError", "MissingDependencyError", "Qrels", "Query", "Ranking",
    "RankstackError", "Run", "ScoredDoc", "__version__", "rank_key", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rankstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
