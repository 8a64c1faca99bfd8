"""One declared schema per command's config, validated one way (pydantic).

A command's schema is derived from what it already declares, never written twice: a CLI
command's from its argparse options (type, ``nargs``, ``choices``, ``action``), ``fit``'s from
its config dataclasses. :meth:`Schema.validate` checks one YAML file's mapping and raises a
:class:`~rankstack.errors.ConfigError` naming the file, the line, the key and the expected
type: unknown keys, wrong types (``max_steps: ten``), a string where a list is expected
(``topics: x.tsv``), ``null`` where a value is needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model
from pydantic import Field as PydField

from rankstack.errors import ConfigError


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    return v


def _scalar_str(v: Any) -> Any:
    # YAML reads `baseline: 0` or `model: 2024` as numbers; as a string option they mean the text.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return v


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Str = Annotated[str, BeforeValidator(_scalar_str)]
_SCALARS: dict[Any, tuple[Any, str]] = {int: (Int, "an integer"), float: (Float, "a number"),
                                        str: (Str, "a string"), bool: (bool, "true or false")}


@dataclass
class Field:
    annotation: Any
    expected: str  # how the message describes the type
    nullable: bool = True


class Schema:
    """Keys -> types of one command's config (``what`` names it in messages)."""

    def __init__(self, what: str, fields: Mapping[str, Field]) -> None:
        self.what = what
        self.fields = dict(fields)
        # internal field names f0, f1, ... (a key such as "json" would shadow a BaseModel
        # attribute); the keys themselves are the aliases
        self._attr = {k: f"f{i}" for i, k in enumerate(self.fields)}
        spec = {self._attr[k]: (Optional[f.annotation] if f.nullable else f.annotation,  # noqa: UP045
                                PydField(None, alias=k))
                for k, f in self.fields.items()}
        self.model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            "Config_" + "".join(c if c.isalnum() else "_" for c in what),
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **spec)

    def validate(self, data: Mapping[str, Any], origin: str = "config",
                 lines: Mapping[str, int] | None = None, prefix: str = "") -> dict[str, Any]:
        """The validated (and coerced: ``"3"`` -> 3 for an integer) values of ``data``;
        ``prefix`` names a nested section in messages (``data.``)."""
        lines = lines or {}
        keyed = {str(k).replace("-", "_"): (prefix + str(k), v) for k, v in data.items()}
        for dest, (key, _) in keyed.items():
            if dest not in self.fields:
                close = difflib.get_close_matches(dest, self.fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{_where(origin, lines.get(key))}: unknown key {key!r} in "
                                  f"{self.what}{hint}; known keys: {', '.join(sorted(self.fields))}")
        for dest, (key, value) in keyed.items():
            if value is None and not self.fields[dest].nullable:
                raise ConfigError(f"{_where(origin, lines.get(key))}: key {key!r}: expected "
                                  f"{self.fields[dest].expected}, got null")
        try:
            model = self.model.model_validate({d: v for d, (_, v) in keyed.items()})
        except ValidationError as exc:
            err = exc.errors()[0]
            dest = str(err["loc"][0]) if err["loc"] else ""
            key, value = keyed.get(dest, (dest, err.get("input")))
            sub = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"][1:])
            expected = self.fields[dest].expected if dest in self.fields else "?"
            raise ConfigError(f"{_where(origin, lines.get(key))}: key {key!r}{sub}: expected "
                              f"{expected}, got {_show(value)} ({err['msg']})") from None
        return {d: getattr(model, self._attr[d]) for d in keyed}


def _where(origin: str, line: int | None) -> str:
    return f"{origin}:{line}" if line else origin


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# -- from argparse ----------------------------------------------------------------------------
def from_parser(parser: argparse.ArgumentParser, what: str,
                skip: tuple[str, ...] = ("help", "config", "version")) -> Schema:
    """The schema of a subcommand's options: YAML keys are the option dests."""
    fields: dict[str, Field] = {}
    for a in parser._actions:
        if a.dest in skip or a.dest == argparse.SUPPRESS:
            continue
        fields[a.dest] = _field_of_action(a)
    return Schema(what, fields)


def _field_of_action(a: argparse.Action) -> Field:
    nullable = a.default is None
    if isinstance(a, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return Field(bool, "true or false", nullable=False)
    custom = a.type is not None and a.type not in _SCALARS
    if isinstance(a, argparse._AppendAction):
        if custom:  # e.g. KEY=VALUE settings: a mapping or a list of KEY=VALUE strings
            return Field(Union[dict[str, Any], list[Any]],  # noqa: UP007
                         "a mapping or a list of KEY=VALUE strings", nullable=nullable)
        inner, desc = _SCALARS[a.type or str]
        return Field(list[inner], f"a list of {_plural(desc)}", nullable=nullable)
    if custom:
        return Field(Any, "a YAML value")
    inner, desc = _SCALARS[a.type or str]
    if a.choices is not None:
        choices = tuple(a.choices)
        inner, desc = Literal[choices], "one of " + ", ".join(map(str, choices))  # type: ignore[valid-type]
    if a.nargs in ("+", "*") or isinstance(a.nargs, int):
        return Field(list[inner], f"a list of {_plural(desc)}", nullable=nullable)
    return Field(inner, desc, nullable=nullable)


def _plural(desc: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings",
            "true or false": "booleans"}.get(desc, f"values ({desc})")


# -- from dataclasses -------------------------------------------------------------------------
def from_dataclass(cls: type, what: str, exclude: tuple[str, ...] = ()) -> Schema:
    """The schema of a config dataclass (its type hints; Literal, unions, lists, Optional)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        ann = hints.get(f.name, Any)
        fields[f.name] = Field(_pyd(ann), _describe(ann), nullable=_is_optional(ann))
    return Schema(what, fields)


def _is_optional(ann: Any) -> bool:
    return ann is Any or type(None) in typing.get_args(ann)


def _pyd(ann: Any) -> Any:
    """Map plain int/float/str to the strict-ish annotated versions, recursively."""
    if ann in _SCALARS:
        return _SCALARS[ann][0]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (Union, types.UnionType):
        return Union[tuple(_pyd(a) for a in args)]  # noqa: UP007
    if origin is list:
        return list[_pyd(args[0])] if args else list
    if origin is tuple:
        return tuple[tuple(_pyd(a) for a in args)] if args else tuple
    if origin is dict:
        return dict[args] if args else dict  # type: ignore[misc]
    return ann


def _describe(ann: Any) -> str:
    if ann in _SCALARS:
        return _SCALARS[ann][1]
    if ann is Any:
        return "any value"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or null)" if type(None) in args else "")
    if origin in (list, tuple):
        return f"a list of {_plural(_describe(args[0]))}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return getattr(ann, "__name__", str(ann))
