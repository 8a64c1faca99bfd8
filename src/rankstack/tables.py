"""Result tables that stay readable in a narrow terminal: the one column rule for every table.

Headers never wrap (a measure name broken over two lines reads as two columns); the free-text
columns (run names, stage keys, query ids) fold their *cells* instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def add_columns(table: Any, headers: Iterable[str], text: Iterable[str] = ()) -> None:
    """Add ``headers`` to a rich ``Table``: the columns named in ``text`` (default: the
    first) are left-aligned and fold; every other is right-aligned, at least as wide as its
    header, never wrapped."""
    headers = list(headers)
    folding = set(text) or {headers[0]}
    for h in headers:
        if h in folding:
            table.add_column(h, justify="left", overflow="fold", min_width=min(len(h), 8))
        else:
            table.add_column(h, justify="right", no_wrap=True, min_width=len(h))
