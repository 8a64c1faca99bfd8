"""Explicit family name -> scorer class registry.

Families are chosen by name (``--family``), never guessed from a model's name. Entries are
``module:Class`` strings so importing the registry does not import torch.
"""

from __future__ import annotations

import importlib

from rankstack.errors import ConfigError

SCORERS: dict[str, str] = {}

# Encoder families: cross-encoders and bi-encoders
SCORERS.update({
    "cross-encoder": "rankstack.rerank.cross_encoder:CrossEncoderScorer",
    "bi-encoder": "rankstack.rerank.bi_encoder:BiEncoderScorer",
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


def register(family: str, target: str) -> None:
    """Add a family: ``register("my-family", "my_pkg.module:MyScorer")``."""
    if family in SCORERS and SCORERS[family] != target:
        raise ConfigError(f"scorer family {family!r} is already registered as {SCORERS[family]}")
    SCORERS[family] = target


def scorer_class(family: str):
    try:
        target = SCORERS[family]
    except KeyError:
        raise ConfigError(
            f"unknown model family {family!r}; known families: {', '.join(sorted(SCORERS))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
