"""One spec builds any re-ranker: ``load_reranker({"family": ..., "model": ..., ...})``.

A spec is a mapping with

* ``family`` - a registered family (:func:`rankstack.rerank.registry.families`), or
* ``preset`` - a name in :data:`rankstack.rerank.presets.PRESETS`, whose spec is merged
  *under* this one (every key of the user's spec wins; ``settings`` are merged key by key);
* ``model`` - hub id, local directory, ``bundled:<name>``, GGUF file or served model name;
* ``backend`` - what runs the model: ``hf`` / ``gguf`` / ``openai`` for LLM families,
  ``torch`` / ``onnx`` for encoder families;
* ``settings`` - family settings (budgets, batch size, template, window, ``depth``,
  ``on_missing``, ...);
* ``members`` - for ``family: fusion`` only, a list of specs.

The same mapping is what ``rankstack rerank`` (``--model/--family/--preset/--backend/--set``),
pipeline stages, ``teach`` (incl. fused teachers) and ``serve`` take. With no family and no
preset, a pointwise model is loaded: the offline default without a model, or the family its
``config.json`` records (families are never guessed from names).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rankstack.errors import ConfigError
from rankstack.rerank.base import RunReranker

SPEC_KEYS = ("model", "family", "preset", "backend", "settings", "members")


@dataclass
class RerankerSpec:
    """A resolved spec (presets merged, types checked)."""

    family: str | None = None
    model: str | None = None
    backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    members: list[RerankerSpec] = field(default_factory=list)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family, "model": self.model,
                             "backend": self.backend, "settings": dict(self.settings)}
        if self.preset:
            d["preset"] = self.preset
        if self.members:
            d["members"] = [m.to_dict() for m in self.members]
        return d


def _merge_under(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in top.items():
        if k == "settings" and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def resolve_spec(spec: Mapping[str, Any] | RerankerSpec | None, *,
                 where: str = "reranker") -> RerankerSpec:
    """Check a spec mapping (ConfigError naming ``where`` and the key) and merge its preset."""
    if isinstance(spec, RerankerSpec):
        return spec
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a re-ranker spec must be a mapping with keys "
                          f"{', '.join(SPEC_KEYS)}, not {type(spec).__name__}")
    unknown = sorted(set(map(str, spec)) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (a re-ranker spec "
                          f"has {', '.join(SPEC_KEYS)}; family settings go under 'settings')")
    raw = dict(spec)
    preset = raw.get("preset")
    if preset is not None:
        from rankstack.rerank.presets import PRESETS

        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(f"{where}.preset: unknown preset {preset!r}; presets: "
                              f"{', '.join(sorted(PRESETS)) or '(none)'}")
        base = PRESETS[preset]
        if "preset" in base or "members" in base:
            raise ConfigError(f"preset {preset!r} must not name another preset or members")
        raw = _merge_under(base, {k: v for k, v in raw.items() if k != "preset"})
    for key in ("family", "model", "backend"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f"{where}.{key}: expected a non-empty string, got {v!r}")
    settings = raw.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{where}.settings: expected a mapping of setting: value, got "
                          f"{type(settings).__name__}")
    bad = [k for k in settings if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}.settings: keys must be strings, got {bad[0]!r}")
    family = raw.get("family")
    if family is not None:
        from rankstack.rerank.registry import family_builder

        family_builder(family)  # unknown family: ConfigError listing the known ones
    members = raw.get("members")
    out_members: list[RerankerSpec] = []
    if family == "fusion":
        if not isinstance(members, list) or not members:
            raise ConfigError(f"{where}.members: family 'fusion' needs a non-empty list of "
                              f"member specs")
        out_members = [resolve_spec(m, where=f"{where}.members[{i}]")
                       for i, m in enumerate(members)]
    elif members is not None:
        raise ConfigError(f"{where}.members: only family 'fusion' takes members")
    return RerankerSpec(family=family, model=raw.get("model"), backend=raw.get("backend"),
                        settings={k.replace("-", "_"): v for k, v in settings.items()},
                        members=out_members, preset=preset)


def load_reranker(spec: Mapping[str, Any] | RerankerSpec | None = None, *,
                  where: str = "reranker", **keys: Any) -> RunReranker:
    """Build the re-ranker a spec describes; ``keys`` (``model=``, ``family=``, ...) are
    merged over ``spec``. The resolved spec is kept as ``reranker.spec``."""
    if keys:
        base = spec.to_dict() if isinstance(spec, RerankerSpec) else dict(spec or {})
        spec = _merge_under(base, keys)
    s = resolve_spec(spec, where=where)
    from rankstack.rerank.registry import POINTWISE_BUILDER, _load, family_builder

    build = _load(POINTWISE_BUILDER) if s.family is None else family_builder(s.family)
    rr = build(s)
    rr.spec = s  # type: ignore[attr-defined]
    return rr


def build_pointwise(spec: RerankerSpec) -> RunReranker:
    """A scorer family (pairs -> scores) wrapped in the pointwise :class:`Reranker`;
    ``backend`` (torch / onnx) is a scorer setting."""
    from rankstack.rerank.reranker import Reranker

    settings = dict(spec.settings)
    if spec.backend is not None:
        if settings.get("backend", spec.backend) != spec.backend:
            raise ConfigError("give the backend once (backend: or settings.backend)")
        settings["backend"] = spec.backend
    return Reranker.from_pretrained(spec.model, spec.family, **settings)


def split_settings(settings: Mapping[str, Any], own: set[str], target: Any, what: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings for the re-ranker (names in ``own``) and for ``target`` (whatever its
    ``__init__`` takes); ConfigError for a name neither takes."""
    import inspect

    params = inspect.signature(target.__init__).parameters
    takes = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
             and n not in ("self", "model")}
    mine = {k: v for k, v in settings.items() if k in own}
    theirs = {k: v for k, v in settings.items() if k not in own}
    unknown = sorted(set(theirs) - takes)
    if unknown:
        raise ConfigError(f"setting(s) {', '.join(unknown)} not known; {what} takes: "
                          f"{', '.join(sorted(own | takes))}")
    return mine, theirs
