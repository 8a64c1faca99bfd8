"""Readers and writers of plain files: TREC runs/qrels, topics, JSONL corpora, retrieve-results JSON.

Readers raise :class:`rankstack.errors.InputError` naming file, line and field. With
``on_error="skip"`` they skip bad records instead, append each error to ``skipped`` (if
given) and log the count. Writers are atomic (temp file + rename).
"""

from rankstack.io._base import ErrorPolicy, atomic_write, iter_lines
from rankstack.io.corpus import iter_corpus, read_corpus, write_corpus
from rankstack.io.retrieve_results import (
    Candidates,
    read_retrieve_results,
    write_retrieve_results,
)
from rankstack.io.topics import read_topics, write_topics
from rankstack.io.trec import read_qrels, read_run, write_qrels, write_run

__all__ = [
    "Candidates",
    "ErrorPolicy",
    "atomic_write",
    "iter_corpus",
    "iter_lines",
    "read_corpus",
    "read_qrels",
    "read_retrieve_results",
    "read_run",
    "read_topics",
    "write_corpus",
    "write_qrels",
    "write_retrieve_results",
    "write_run",
    "write_topics",
]
