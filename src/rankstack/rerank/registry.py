"""Explicit family name -> implementation registries.

Families are chosen by name (``family:`` / ``--family``), never guessed from a model's name.
Entries are ``module:attr`` strings so importing the registry imports no heavy library.

* :data:`SCORERS`: pointwise scorer classes (pairs -> scores), wrapped by
  :class:`~rankstack.rerank.reranker.Reranker`.
* :data:`FAMILIES`: builders of every other re-ranker family, ``build(spec) -> RunReranker``
  (listwise / pointwise LLMs, PE-Rank, BM25 over the candidates, fusion). Every scorer
  family is also a re-ranker family (built by the pointwise builder).
"""

from __future__ import annotations

import importlib
from typing import Any

from rankstack.errors import ConfigError

SCORERS: dict[str, str] = {}

# Encoder families: cross-encoders and bi-encoders
SCORERS.update({
    "cross-encoder": "rankstack.rerank.cross_encoder:CrossEncoderScorer",
    "bi-encoder": "rankstack.rerank.bi_encoder:BiEncoderScorer",
    "gguf-bi-encoder": "rankstack.rerank.gguf_bi_encoder:GGUFBiEncoderScorer",
    # cross-encoders saved by lightning-ir (monoELECTRA / Rank-DistiLLM checkpoints)
    "lightning-ir": "rankstack.rerank.lightning_ir:LightningIRCrossEncoderScorer",
})

# T5 (encoder-decoder) and decoder-only families
SCORERS.update({
    "monot5": "rankstack.rerank.t5:MonoT5Scorer",
    "twolar": "rankstack.rerank.t5:TwolarScorer",
    "rankt5": "rankstack.rerank.t5:RankT5Scorer",
    "rankllama": "rankstack.rerank.decoder:RankLlamaScorer",
    "yes-no": "rankstack.rerank.decoder:YesNoScorer",
})

#: the builder of every scorer family
POINTWISE_BUILDER = "rankstack.rerank.spec:build_pointwise"

#: re-ranker families that are not pairs -> scores
FAMILIES: dict[str, str] = {
    "llm-listwise": "rankstack.llm.build:build_listwise",
    "llm-pointwise": "rankstack.llm.build:build_pointwise",
    "pe-rank": "rankstack.llm.pe_rank.reranker:build_pe_rank",
    "bm25": "rankstack.rerank.bm25:build_bm25",
    "fusion": "rankstack.rerank.fusion:build_fusion",
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def register(family: str, target: str) -> None:
    """Add a scorer family: ``register("my-family", "my_pkg.module:MyScorer")``."""
    if family in FAMILIES:
        raise ConfigError(f"{family!r} is already a re-ranker family ({FAMILIES[family]})")
    if family in SCORERS and SCORERS[family] != target:
        raise ConfigError(f"scorer family {family!r} is already registered as {SCORERS[family]}")
    SCORERS[family] = target


def register_family(family: str, builder: str) -> None:
    """Add a re-ranker family: ``register_family("mine", "my_pkg.mod:build")``, where
    ``build(spec: RerankerSpec) -> RunReranker``."""
    if family in SCORERS or (family in FAMILIES and FAMILIES[family] != builder):
        raise ConfigError(f"re-ranker family {family!r} is already registered")
    FAMILIES[family] = builder


def families() -> list[str]:
    """Every family name a spec may give."""
    return sorted({*SCORERS, *FAMILIES})


def scorer_class(family: str):
    try:
        target = SCORERS[family]
    except KeyError:
        hint = (f" ({family!r} is a re-ranker family, not a pairs -> scores scorer)"
                if family in FAMILIES else "")
        raise ConfigError(
            f"unknown model family {family!r}{hint}; scorer families: "
            f"{', '.join(sorted(SCORERS))}") from None
    return _load(target)


def family_builder(family: str):
    """``build(spec) -> RunReranker`` of a family."""
    if family in FAMILIES:
        return _load(FAMILIES[family])
    if family in SCORERS:
        return _load(POINTWISE_BUILDER)
    raise ConfigError(f"unknown model family {family!r}; known families: "
                      f"{', '.join(families())}")
