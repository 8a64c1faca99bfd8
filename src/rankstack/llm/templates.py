"""Prompt templates as versioned YAML data files (``templates/*.yaml``).

A template has ``name``, integer ``version`` and ``kind`` (``listwise`` or ``pointwise``),
and ``messages``: a list of ``{role, content}`` rendered with ``str.format`` placeholders
(``{query}``, ``{num}``, ``{passages}``, ``{id}``, ``{passage}``; literal braces doubled).
A message with ``repeat: passages`` is emitted once per passage. :attr:`PromptTemplate.id`
(``name@vN``) is part of every cache key, so editing a template means bumping its version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rankstack.errors import ConfigError
from rankstack.llm.base import Message

KINDS = ("listwise", "pointwise")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    kind: str
    messages: tuple[dict[str, Any], ...]
    passage_format: str = "[{id}] {passage}\n"
    tokens_per_passage: int = 6
    extra_tokens: int = 8
    stop: tuple[str, ...] = ()
    completion_suffix: str = ""
    positive: str = "Yes"
    negative: str = "No"
    source: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    def max_tokens(self, num: int) -> int:
        """Generation budget of a listwise window of ``num`` passages."""
        return self.tokens_per_passage * num + self.extra_tokens

    def render_listwise(self, query: str, passages: Sequence[str]) -> list[Message]:
        num = len(passages)
        joined = "".join(self.passage_format.format(id=i, passage=p)
                         for i, p in enumerate(passages, 1))
        out: list[Message] = []
        for m in self.messages:
            if m.get("repeat") == "passages":
                continue
            out.append({"role": m["role"], "content": m["content"].format(
                query=query, num=num, passages=joined)})
        # repeated turns are interleaved per passage, at the position of the first of them
        rep = [m for m in self.messages if m.get("repeat") == "passages"]
        if rep:
            first = next(i for i, m in enumerate(self.messages) if m.get("repeat") == "passages")
            turns = [{"role": m["role"], "content": m["content"].format(
                        query=query, num=num, id=i, passage=p)}
                     for i, p in enumerate(passages, 1) for m in rep]
            out[first:first] = turns
        return out

    def render_pointwise(self, query: str, passage: str, *, chat: bool = True) -> list[Message]:
        out = [{"role": m["role"], "content": m["content"].format(query=query, passage=passage)}
               for m in self.messages]
        if not chat and self.completion_suffix:
            out[-1] = {**out[-1], "content": out[-1]["content"] + self.completion_suffix}
        return out


def builtin_templates() -> list[str]:
    folder = resources.files("rankstack.llm") / "templates"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_template(name_or_path: str | os.PathLike[str]) -> PromptTemplate:
    """A built-in template by name (``rankgpt``, ``rankzephyr``, ``yesno``) or a YAML path."""
    s = os.fspath(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s:
        from rankstack.config import read_yaml_text  # exists, a file, UTF-8 (BOM dropped)

        path = Path(s)
        text, source = read_yaml_text(path, "template"), str(path)
    else:
        res = resources.files("rankstack.llm") / "templates" / f"{s}.yaml"
        if not res.is_file():
            raise ConfigError(f"unknown prompt template {s!r}; built-in: "
                              f"{', '.join(builtin_templates())} (or give a YAML path)")
        text, source = res.read_text(encoding="utf-8"), f"rankstack/llm/templates/{s}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    return _validate(data, source)


def _validate(data: Any, source: str) -> PromptTemplate:
    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: field '{field}': {why}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a template must be a mapping")
    for key in ("name", "version", "kind", "messages"):
        if key not in data:
            raise bad(key, "missing")
    if not isinstance(data["version"], int) or isinstance(data["version"], bool):
        raise bad("version", f"must be an integer, got {data['version']!r}")
    if data["kind"] not in KINDS:
        raise bad("kind", f"must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    msgs = data["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages", "must be a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise bad(f"messages[{i}].content", "missing or not a string")
        if m.get("role") not in ROLES:
            raise bad(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
        if m.get("repeat") not in (None, "passages"):
            raise bad(f"messages[{i}].repeat", "only 'passages' is supported")
    answer = data.get("answer") or {}
    if data["kind"] == "pointwise" and not ({"positive", "negative"} <= set(answer)):
        raise bad("answer", "pointwise templates need answer.positive and answer.negative")
    try:
        t = PromptTemplate(
            name=str(data["name"]), version=data["version"], kind=data["kind"],
            messages=tuple(msgs),
            passage_format=str(data.get("passage_format", "[{id}] {passage}\n")),
            tokens_per_passage=int(data.get("tokens_per_passage", 6)),
            extra_tokens=int(data.get("extra_tokens", 8)),
            stop=tuple(data.get("stop") or ()),
            completion_suffix=str(data.get("completion_suffix", "")),
            positive=str(answer.get("positive", "Yes")),
            negative=str(answer.get("negative", "No")),
            source=source,
        )
        # render once with dummy values so a bad placeholder fails at load, not mid-run
        if t.kind == "listwise":
            t.render_listwise("q", ["p1", "p2"])
        else:
            t.render_pointwise("q", "p")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{source}: bad template placeholder or value: {exc!r}") from None
    return t
