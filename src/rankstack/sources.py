"""Gather runs, queries and passages from a mix of dataset names and plain files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rankstack.datasets import DATASETS, load_dataset
from rankstack.errors import ConfigError, InputError
from rankstack.io import read_corpus, read_run, read_topics
from rankstack.records import Doc, Query, Run


@dataclass
class Sources:
    runs: list[Run] = field(default_factory=list)
    queries: dict[str, Query] = field(default_factory=dict)
    docs: dict[str, Doc] = field(default_factory=dict)


def _merge(into: dict, new: dict, what: str, origin: str) -> None:
    for k, v in new.items():
        old = into.get(k)
        if old is not None and old != v:
            raise InputError(f"{what} {k!r} from {origin} differs from an earlier source",
                             field=what)
        into[k] = v


def load_sources(
    runs: Sequence[str | os.PathLike[str]],
    *,
    topics: Sequence[str | os.PathLike[str]] = (),
    corpus: Sequence[str | os.PathLike[str]] = (),
) -> Sources:
    """Each entry of ``runs`` is a dataset name (its candidate run + queries + passages), a
    retrieve-results JSON, or a TREC run file (text from ``topics`` / ``corpus``)."""
    src = Sources()
    for spec in runs:
        s = str(spec)
        if s in DATASETS or s.startswith("irds:") or s.endswith((".json", ".json.gz")):
            ds = load_dataset(s)
            if ds.run is None:
                raise ConfigError(f"dataset {s!r} has no candidate run")
            src.runs.append(ds.run)
            _merge(src.queries, ds.queries, "query", s)
            _merge(src.docs, ds.docs, "doc", s)
        elif Path(s).is_file():
            src.runs.append(read_run(s))
        else:
            raise ConfigError(f"{s!r} is neither a dataset name nor an existing run file")
    for t in topics:
        _merge(src.queries, read_topics(t), "query", str(t))
    for c in corpus:
        _merge(src.docs, read_corpus(c), "doc", str(c))
    return src
