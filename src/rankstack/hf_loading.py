"""The one way to load a Hugging Face model or tokenizer and to name a dtype.

Every transformers-based part of rankstack (re-ranker families, the HF LLM backend, PE-Rank,
students) loads through :func:`load_model` / :func:`load_tokenizer` and names precision in one
vocabulary (:data:`DTYPES`):

* ``fp32`` - float32 weights and compute (what the reference implementations run);
* ``bf16`` - bfloat16 weights (fast on GPUs and on CPUs with AMX-BF16 / AVX512-BF16);
* ``fp16`` - float16 weights (GPUs);
* ``bf16-mixed`` - float32 weights under bf16 autocast (matmuls in bf16, norms/softmax in fp32);
* ``auto`` - ``bf16`` where it is native (CUDA with bf16, or a CPU flag above), else ``fp32``.

Aliases are accepted and normalised by :func:`normalize_dtype`: ``float32``/``float``,
``bfloat16``, ``float16``/``half``, with or without a ``torch.`` prefix. A bad name is a
:class:`~rankstack.errors.ConfigError` listing the vocabulary.

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
from collections.abc import Iterator
from typing import Any

from rankstack.errors import ConfigError

#: Canonical dtype names, in the order they are listed in errors and help texts.
DTYPES = ("auto", "fp32", "bf16", "fp16", "bf16-mixed")

_ALIASES = {
    "float32": "fp32", "float": "fp32", "fp32": "fp32", "32": "fp32", "32-true": "fp32",
    "bfloat16": "bf16", "bf16": "bf16", "bf16-true": "bf16",
    "float16": "fp16", "half": "fp16", "fp16": "fp16", "16-true": "fp16",
    "bf16-mixed": "bf16-mixed", "auto": "auto",
}


def normalize_dtype(name: Any) -> str:
    """The canonical name (one of :data:`DTYPES`) of ``name``; aliases accepted."""
    if name is None:
        return "auto"
    key = str(name).strip().lower().removeprefix("torch.")
    try:
        return _ALIASES[key]
    except KeyError:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)} (aliases: float32, "
                          f"bfloat16, float16), not {name!r}") from None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def concrete_dtype(dtype: Any = "auto", device: str = "cpu") -> str:
    """``auto`` resolved for ``device`` (``bf16`` where native, else ``fp32``); other names
    normalised."""
    name = normalize_dtype(dtype)
    if name != "auto":
        return name
    if str(device).startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def resolve_dtype(dtype: Any = "auto", device: str = "cpu") -> Any:
    """The torch dtype of the **weights** for ``dtype`` on ``device`` (``bf16-mixed`` keeps
    fp32 weights: wrap forward passes in :func:`autocast`)."""
    import torch

    return {"fp32": torch.float32, "bf16-mixed": torch.float32, "bf16": torch.bfloat16,
            "fp16": torch.float16}[concrete_dtype(dtype, device)]


def autocast(dtype: Any, device: str = "cpu") -> Any:
    """Context for forward passes: bf16 autocast for ``bf16-mixed``, else a no-op."""
    import contextlib

    if normalize_dtype(dtype) != "bf16-mixed":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(str(device).split(":")[0], dtype=torch.bfloat16)


def check_model_path(model: str) -> str:
    """Return ``model`` (a ``bundled:<name>`` id resolved to its package directory); raise
    ConfigError when it is written as a local path that does not exist (``/x``, ``./x``,
    ``~/x``, ``x/`` or more than one ``/``). Hub names (``org/name``) pass through."""
    if not isinstance(model, str) or not model:
        raise ConfigError(f"model must be a hub name or a local path, not {model!r}")
    if model.startswith("bundled:"):
        from rankstack.rerank.defaults import resolve_bundled

        return resolve_bundled(model)
    p = pathlib.Path(model).expanduser()
    looks_local = (model.startswith(("/", "./", "../", "~", ".\\")) or model.endswith(("/", "\\"))
                   or model.count("/") > 1)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"model path {model} is a file; give the model directory")
        return str(p)
    if looks_local:
        raise ConfigError(f"model path {model} does not exist")
    return model


def model_file(model: str, filename: str) -> pathlib.Path | None:
    """A file of a model repository (``1_Pooling/config.json``, ...), or None when it has none.

    Works for ``bundled:`` ids, local directories and hub names (from the local cache; online,
    fetched like the weights). Never raises for a missing file or an unreachable hub.
    """
    path = check_model_path(model)
    local = pathlib.Path(path)
    if local.is_dir():
        f = local / filename
        return f if f.is_file() else None
    try:
        from transformers.utils import cached_file

        found = cached_file(path, filename, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return pathlib.Path(found) if found else None


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar: a sub-second bar per model that tells the user nothing (the
    previous setting is restored, so a user's own choice stands)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # not a transformers class: nothing to silence
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_pretrained(auto_cls: Any, model: str, **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained(model, **kwargs)`` with clear errors: a missing local path,
    or a hub name that cannot be fetched (offline: set the path to a local copy)."""
    model = check_model_path(model)
    try:
        with _quiet_loading():
            return auto_cls.from_pretrained(model, **kwargs)
    except OSError as exc:
        raise ConfigError(f"cannot load {getattr(auto_cls, '__name__', auto_cls)} from "
                          f"{model!r}: {exc}") from exc


def load_tokenizer(model: str, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with the errors of :func:`load_pretrained`."""
    from rankstack.errors import require

    transformers = require("transformers", "neural", "Hugging Face models")
    return load_pretrained(transformers.AutoTokenizer, model, **kwargs)


def load_model(auto_class: str | Any, model: str, *, dtype: Any = "fp32", device: str = "cpu",
               eval: bool = True, **kwargs: Any) -> Any:
    """Load ``model`` with a transformers Auto class (a name such as
    ``"AutoModelForSequenceClassification"`` or the class) in ``dtype`` on ``device``.

    ``dtype`` is any name of :data:`DTYPES` (aliases accepted); the weights get
    :func:`resolve_dtype`'s torch dtype. Other keyword arguments go to ``from_pretrained``.
    The model is returned in eval mode unless ``eval=False``.
    """
    from rankstack.errors import require

    require("torch", "neural", "Hugging Face models")
    transformers = require("transformers", "neural", "Hugging Face models")
    if isinstance(auto_class, str):
        try:
            auto_class = getattr(transformers, auto_class)
        except AttributeError:
            raise ConfigError(f"transformers has no class {auto_class!r}") from None
    m = load_pretrained(auto_class, model, dtype=resolve_dtype(dtype, device), **kwargs)
    m = m.to(device)
    return m.eval() if eval else m


__all__ = [
    "DTYPES",
    "autocast",
    "check_model_path",
    "concrete_dtype",
    "cpu_flags",
    "cpu_has_bf16",
    "load_model",
    "load_pretrained",
    "load_tokenizer",
    "model_file",
    "normalize_dtype",
    "resolve_dtype",
]
