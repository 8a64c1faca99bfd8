"""Presets for published models: one name = family + template + passage preparation + budgets +
pooling + prefixes + precision, i.e. the reference implementation's behaviour.

``PRESETS[name]`` is a re-ranker spec mapping (the keys ``family``, optionally ``model``,
``backend`` and ``settings``), merged *under* what the user gives: every knob stays overridable.
Filled in by the presets work (issue 16); consumed by :func:`rankstack.rerank.load_reranker`.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {}

#: PE-Rank (Liu et al. 2024; pe_rank/src/ranker.py ListwiseEmbeddingRanker + evaluate.py): the
#: reference prompt ("Passage {i}: [<PLACEHOLDER>]" blocks), BOS forced before the first output
#: passage, raw hidden states scored against the projected embeddings (no normalisation), the
#: encoder at 512 tokens (mean pooling, L2-normalised), windows 20 / stride 10. The published
#: checkpoint's directory layout is read by rankstack.llm.pe_rank.published. The reference runs
#: fp16 on CUDA; fp32 here (CPU-safe), override with settings.dtype=fp16.
PRESETS["pe-rank"] = {
    "family": "pe-rank",
    "model": "liuqi6777/pe-rank-mistral-jina",
    "settings": {"window": 20, "stride": 10, "dtype": "fp32", "layout": "reference",
                 "normalize_hidden": False, "bos_before_output": True,
                 "max_passage_tokens": 512},
}
