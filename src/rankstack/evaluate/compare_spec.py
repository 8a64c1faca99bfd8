"""The data of ``rankstack compare``: model entries (``--models``), settings, measured costs and
dataset arguments; shared by :mod:`rankstack.evaluate.compare` and its report."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError

CANDIDATES = "candidates"
SPEC_KEYS = {"label", "model", "family", "preset", "backend", "settings", "depth", "max_queries",
             "timing_queries", "members"}


@dataclass
class ModelSpec:
    """One entry of ``--models``: a re-ranker spec plus compare's own keys."""

    label: str
    spec: dict[str, Any]  # model / family / backend / settings (the re-ranker spec)
    depth: int | None = None  # None: the re-ranker's own default
    max_queries: int | None = None
    timing_queries: int | None = None  # None: the compare setting

    @property
    def is_candidates(self) -> bool:
        return self.spec.get("family") == CANDIDATES


def parse_model(text: str | Mapping[str, Any], where: str = "--models") -> ModelSpec:
    """``candidates``, ``LABEL=SPEC``, a YAML/JSON mapping, or a YAML file of one mapping.

    Keys: ``model``, ``family``, ``backend``, ``settings`` (the re-ranker spec) and
    ``label``, ``depth`` (default 100), ``max_queries`` (first N queries of the run).
    """
    import yaml

    label = None
    if isinstance(text, str):
        head, sep, rest = text.partition("=")
        if sep and head and all(c.isalnum() or c in "._-+@" for c in head):
            label, text = head, rest
        if text.strip() == CANDIDATES:
            raw: Any = {"family": CANDIDATES}
        elif os.path.isfile(text):
            try:
                raw = yaml.safe_load(Path(text).read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"{where}: {text}: not valid YAML: {exc}") from None
            where = text
        else:
            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{where}: {text!r} is not a YAML mapping: {exc}") from None
    else:
        raw = dict(text)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {text!r}: expected 'candidates', LABEL=SPEC, a mapping "
                          f"such as '{{model: M, family: cross-encoder}}', or a YAML file")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(SPEC_KEYS))})")
    spec = {k: raw[k] for k in ("model", "family", "preset", "backend", "settings", "members")
            if raw.get(k) is not None}
    if "settings" in spec and not isinstance(spec["settings"], Mapping):
        raise ConfigError(f"{where}: 'settings' must be a mapping, not {spec['settings']!r}")
    for key in ("depth", "max_queries", "timing_queries"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{where}: {key!r} must be a positive integer, not {v!r}")
    label = label or raw.get("label") or _default_label(spec)
    return ModelSpec(str(label), spec, raw.get("depth"), raw.get("max_queries"),
                     raw.get("timing_queries"))


def _default_label(spec: Mapping[str, Any]) -> str:
    if spec.get("family") == CANDIDATES:
        return CANDIDATES
    model = str(spec.get("model") or "default")
    name = Path(model.rstrip("/")).name or model
    return f"{spec.get('family') or spec.get('preset') or 'model'}:{name}"


@dataclass
class CompareSettings:
    measures: list[str] = field(default_factory=lambda: ["nDCG@10"])
    baseline: str | None = None  # label; default: the first row
    reference: str | None = None  # label for the ratios; default: the first measured model
    threads: int = 1
    repeats: int = 3
    warmup: int = 1
    timing_queries: int | None = 10
    max_queries: int | None = None
    missing: str = "skip"
    binary_rel: int | None = None  # None: the qrels' own (2 for TREC DL datasets), else 1
    tests: list[str] = field(default_factory=lambda: ["t", "perm"])
    rounds: int = 10_000
    seed: int = 0
    alpha: float = 0.05

    def check(self) -> None:
        for key in ("threads", "repeats"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, not {v!r}")
        for key in ("timing_queries", "max_queries"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{key} must be a positive integer or None, not {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, not {self.warmup!r}")

    def method(self) -> str:
        return (f"each model in a fresh process, threads={self.threads} for all; "
                f"{self.warmup} warm-up quer{'y' if self.warmup == 1 else 'ies'}, then "
                f"{self.repeats} timing pass(es) interleaved across models (order rotated), "
                f"{self.timing_queries or 'all'} timing queries (unless a model sets its "
                f"own) each re-ranked alone, caches off; latency = median over passes per "
                f"query, p50/p95 over queries; pairs/s = median over passes; load = one "
                f"load in a fresh process, importing its libraries (torch, llama_cpp) included")


@dataclass
class ModelCost:
    """Measured cost of one model (medians; see the module docstring)."""

    label: str
    name: str
    load_s: float  # one load_reranker() in a fresh process, its libraries' imports included
    quality_s: float | None  # None when the quality run was re-used
    pairs_per_s: float
    p50_ms: float
    p95_ms: float
    timing_queries: int
    pairs_per_query: float
    memory: dict[str, Any]
    memory_after_load: dict[str, Any] = field(default_factory=dict)
    llm_calls_per_query: float | None = None
    prompt_tokens_per_query: float | None = None
    completion_tokens_per_query: float | None = None
    calls_per_s: float | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)
    quality_report: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_mb(self) -> float | None:
        """What the ratios use: added RSS, or the GPU peak where a GPU was used."""
        return self.memory.get("gpu_peak_mb") or self.memory.get("added_rss_mb")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["memory_mb_for_ratios"] = self.memory_mb
        return d


@dataclass
class DatasetArgs:
    """Where the candidates come from (``rankstack.datasets.load_dataset`` arguments)."""

    name: str
    run: str | None = None
    topics: str | None = None
    corpus: str | None = None
    qrels: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if v is None else os.fspath(v)) for k, v in self.__dict__.items()}
