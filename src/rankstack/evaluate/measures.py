"""Measure parsing and naming: the binary-relevance rule, applied once."""

from __future__ import annotations

from typing import Any

from rankstack.errors import ConfigError


def resolve_measure(measure: Any, binary_rel: int = 1) -> Any:
    """Parse a measure string (or take a measure object) and apply the binary-relevance rule.

    A measure that supports an integer ``rel`` threshold and does not set it gets
    ``rel=binary_rel``. Measures whose ``rel`` default is "not provided" (NumRet, RBP: graded
    or count-everything semantics) are left alone.
    """
    import ir_measures
    from ir_measures.measures.base import Measure

    if isinstance(measure, str):
        try:
            m = ir_measures.parse_measure(measure.strip())
        except (ValueError, NameError, SyntaxError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"unknown or malformed measure {measure!r}: {exc}") from None
    elif isinstance(measure, Measure):
        m = measure
    else:
        raise ConfigError(f"a measure must be a string or an ir_measures measure, not {measure!r}")
    rel = m.SUPPORTED_PARAMS.get("rel")
    if rel is not None and "rel" not in m.params and isinstance(rel.default, int):
        m = m(rel=binary_rel)
    return m


def display_name(measure: Any, binary_rel: int) -> str:
    """A measure's name with its relevance threshold always visible (``RR(rel=1)@10``)."""
    m = resolve_measure(measure, binary_rel)
    name = str(m)
    rel = m.SUPPORTED_PARAMS.get("rel")
    if rel is None or not isinstance(rel.default, int) or "rel=" in name:
        return name
    value = m.params.get("rel", binary_rel)
    if "(" in name:
        return name.replace("(", f"(rel={value},", 1)
    base, at, cutoff = name.partition("@")
    return f"{base}(rel={value}){at}{cutoff}"
