"""Stackable YAML configs (later files override earlier ones, CLI flags override all) and the
one ``KEY=VALUE`` settings parser (``--setting``, ``--set``, ``--query-setting``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rankstack.errors import ConfigError


def read_yaml_text(path: str | os.PathLike[str], what: str = "config") -> str:
    """The text of a YAML file (config or template): must exist, be a file, be UTF-8; a BOM
    is dropped. Errors are ConfigErrors naming the path (and the line of a bad byte)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: {what} file does not exist")
    if p.is_dir():
        raise ConfigError(f"{p}: {what} path is a directory, expected a YAML file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: {what} file cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: {what} file is not valid UTF-8 (byte "
                          f"{raw[exc.start:exc.start + 1]!r} at offset {exc.start}); save it "
                          f"as UTF-8") from None


def load_yaml(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    p = Path(path)
    text = read_yaml_text(p, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of keys to values")
    return data


def key_lines(path: str | os.PathLike[str]) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping file (for error messages)."""
    try:
        node = yaml.compose(read_yaml_text(path))
    except (yaml.YAMLError, ConfigError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value
            if isinstance(k, yaml.ScalarNode)}


def parse_setting(text: str, option: str = "--setting") -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``; the value is read as YAML (``3`` is an int, ``[a, b]``
    a list, ``{a: 1}`` a mapping, ``true`` a bool), except that text which YAML would read as a
    block mapping (``query: ``) stays text; dashes in the key become underscores."""
    if not isinstance(text, str):
        raise ConfigError(f"{option}: expected KEY=VALUE, got {text!r}")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{option}: expected KEY=VALUE, got {text!r}")
    flow = value.strip().startswith(("{", "["))
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        if flow:
            raise ConfigError(f"{option} {key}: value {value!r} is not valid YAML: "
                              f"{exc}") from None
        parsed = value
    if isinstance(parsed, dict) and not flow:  # "query: " is a prefix text, not a mapping
        parsed = value
    return key.replace("-", "_"), parsed


def setting_arg(text: str) -> tuple[str, Any]:
    """argparse ``type=`` for KEY=VALUE options."""
    import argparse

    try:
        return parse_setting(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None


def parse_settings(items: Any, option: str = "--setting",
                   allowed: Iterable[str] | None = None, what: str = "") -> dict[str, Any]:
    """Settings from CLI tuples, KEY=VALUE strings, a list of them, or a YAML mapping."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k).replace("-", "_"), v) for k, v in items.items()]
    else:
        if isinstance(items, str):
            items = [items]
        pairs = [parse_setting(i, option) if isinstance(i, str) else tuple(i) for i in items]
    out: dict[str, Any] = {}
    known = None if allowed is None else tuple(allowed)
    for key, value in pairs:
        if known is not None and key not in known:
            raise ConfigError(f"{option}: unknown {what + ' ' if what else ''}setting {key!r} "
                              f"(known: {', '.join(known)})")
        out[key] = value
    return out


def apply_overrides(cfg: Mapping[str, Any], items: Iterable[str], option: str = "--set"
                    ) -> dict[str, Any]:
    """``--set a.b=VALUE`` overrides on a config; dotted keys address nested sections."""
    out = dict(cfg)
    for item in items:
        key, value = parse_setting(item, option)
        node: dict[str, Any] = {}
        cur = node
        parts = key.split(".")
        for k in parts[:-1]:
            cur = cur.setdefault(k, {})
        cur[parts[-1]] = value
        out = merge(out, node)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two mappings; nested dicts merge, everything else is replaced."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_configs(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Load and stack YAML files in order (a later file overrides an earlier one)."""
    cfg: dict[str, Any] = {}
    for p in paths:
        cfg = merge(cfg, load_yaml(p))
    return cfg


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A stable short hash of a config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
