"""The one resolver of "dataset name or file" arguments, and gathering runs, queries and
passages from a mix of them.

Precedence, the same for every command and option that takes "a dataset or a file":

1. ``irds:<id>`` is an ir_datasets dataset.
2. A path that exists is that file (a directory with a dataset's name does not count): ``.json`` / ``.json.gz`` is rank_llm retrieve-results JSON
   (candidates with query and passage text); any other file is read in the format the option
   expects (TREC run, topics ``qid<TAB>text``, TREC qrels, JSONL/TSV corpus). A directory is
   an error (an input file is expected).
3. A name in :data:`rankstack.datasets.DATASETS` is that named dataset.
4. Anything else is an error naming the argument and the known dataset names.

So a local file always wins over a dataset of the same name, and a typo never silently
becomes a dataset (or the other way round).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rankstack.datasets import DATASETS, Dataset, load_dataset
from rankstack.errors import ConfigError, InputError
from rankstack.io import read_corpus, read_qrels, read_run, read_topics
from rankstack.io._base import check_input_file
from rankstack.records import Doc, Qrels, Query, Run

Kind = Literal["irds", "json", "file", "dataset"]
_JSON = (".json", ".json.gz")


def classify(arg: str | os.PathLike[str], what: str = "input") -> Kind:
    """Which of the four cases (see the module docstring) ``arg`` is; checks files exist and
    are readable, but reads nothing else."""
    s = os.fspath(arg)
    if s.startswith("irds:"):
        return "irds"
    if os.path.isdir(s) and s in DATASETS:  # e.g. an output directory named like a dataset
        return "dataset"
    if os.path.exists(s):
        check_input_file(s, what)
        return "json" if s.endswith(_JSON) else "file"
    if s in DATASETS:
        return "dataset"
    parent = os.path.dirname(s)
    if parent and not os.path.isdir(parent):
        raise InputError(f"{what} file does not exist (no directory {parent}), and it is not "
                         f"a dataset name", path=s)
    if parent or "." in os.path.basename(s):  # looks like a file name, not a dataset name
        raise InputError(f"{what} file does not exist (and it is not a dataset name: "
                         f"{', '.join(sorted(DATASETS))})", path=s)
    raise ConfigError(f"{what} {s!r} is neither a file nor a dataset name "
                      f"(known: {', '.join(sorted(DATASETS))}; or irds:<id>)")


def _dataset(arg: str, what: str) -> Dataset:
    return load_dataset(arg)


def load_run_arg(arg: str | os.PathLike[str], what: str = "run") -> Run:
    """A run: a dataset's candidate run, retrieve-results JSON's run, or a TREC run file."""
    s = os.fspath(arg)
    kind = classify(s, what)
    if kind == "file":
        return read_run(s)
    ds = _dataset(s, what)
    if ds.run is None:
        raise ConfigError(f"{what}: dataset {s!r} has no candidate run")
    return ds.run


def load_queries_arg(arg: str | os.PathLike[str], what: str = "queries") -> dict[str, Query]:
    """Queries: a dataset's, retrieve-results JSON's, or a topics file's (``qid<TAB>text``)."""
    s = os.fspath(arg)
    queries = read_topics(s) if classify(s, what) == "file" else _dataset(s, what).queries
    if not queries:
        raise ConfigError(f"{what} {s}: no queries")
    return queries


def load_qrels_arg(arg: str | os.PathLike[str], what: str = "qrels") -> Qrels:
    """Judgments: a dataset's qrels (carrying its ``binary_rel``) or a TREC qrels file
    (``binary_rel`` not stated)."""
    s = os.fspath(arg)
    kind = classify(s, what)
    if kind == "json":
        raise ConfigError(f"{what} {s}: retrieve-results JSON holds no judgments")
    if kind == "file":
        return read_qrels(s)
    ds = _dataset(s, what)
    if ds.qrels is None:
        raise ConfigError(f"{what}: dataset {s!r} has no qrels")
    ds.qrels.name = s
    return ds.qrels


def load_docs_arg(arg: str | os.PathLike[str], what: str = "corpus") -> dict[str, Doc]:
    """Passages: a dataset's or retrieve-results JSON's, or a JSONL/TSV corpus file."""
    s = os.fspath(arg)
    if classify(s, what) == "file":
        return read_corpus(s)
    docs = _dataset(s, what).docs
    if not docs:
        raise ConfigError(f"{what}: dataset {s!r} has no passage text")
    return docs


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


def _as_list(value: Sequence[str | os.PathLike[str]] | str, what: str
             ) -> list[str | os.PathLike[str]]:
    if isinstance(value, str | os.PathLike):
        raise ConfigError(f"{what}: expected a list of dataset names or files, got the string "
                          f"{os.fspath(value)!r} (write [{os.fspath(value)}])")
    return list(value)


def load_sources(
    runs: Sequence[str | os.PathLike[str]],
    *,
    topics: Sequence[str | os.PathLike[str]] = (),
    corpus: Sequence[str | os.PathLike[str]] = (),
) -> Sources:
    """Each entry of ``runs`` is a dataset name (its candidate run + queries + passages), a
    retrieve-results JSON, or a TREC run file (text from ``topics`` / ``corpus``), resolved
    as the module docstring says."""
    src = Sources()
    for spec in _as_list(runs, "runs"):
        s = os.fspath(spec)
        if classify(s, "run") == "file":
            src.runs.append(read_run(s))
            continue
        ds = _dataset(s, "run")
        if ds.run is None:
            raise ConfigError(f"dataset {s!r} has no candidate run")
        src.runs.append(ds.run)
        _merge(src.queries, ds.queries, "query", s)
        _merge(src.docs, ds.docs, "doc", s)
    for t in _as_list(topics, "topics"):
        _merge(src.queries, load_queries_arg(t, "topics"), "query", os.fspath(t))
    for c in _as_list(corpus, "corpus"):
        _merge(src.docs, load_docs_arg(c, "corpus"), "doc", os.fspath(c))
    return src
