"""Explicit backend name -> class registry (``--backend hf|gguf|openai``).

Entries are ``module:Class`` strings so importing the registry imports no heavy library.
"""

from __future__ import annotations

import importlib
from typing import Any

from rankstack.errors import ConfigError
from rankstack.llm.base import LLMBackend

BACKENDS: dict[str, str] = {
    "hf": "rankstack.llm.hf:HFBackend",
    "gguf": "rankstack.llm.gguf:GGUFBackend",
    "openai": "rankstack.llm.openai_http:OpenAIBackend",
}


def register_backend(name: str, target: str) -> None:
    """Add a backend: ``register_backend("mine", "my_pkg.mod:MyBackend")``."""
    if name in BACKENDS and BACKENDS[name] != target:
        raise ConfigError(f"LLM backend {name!r} is already registered as {BACKENDS[name]}")
    BACKENDS[name] = target


def backend_class(name: str) -> type[LLMBackend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown LLM backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def load_backend(name: str, model: str, **options: Any) -> LLMBackend:
    """Instantiate backend ``name`` for ``model`` (hub name, local path, GGUF file, or the
    model name a server serves) with backend-specific ``options``."""
    return backend_class(name)(model, **options)
