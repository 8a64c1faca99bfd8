"""Property-based tests of the readers: arbitrary text never crashes them with anything but
InputError, and valid random runs / qrels / topics / corpora round-trip exactly."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankstack.errors import InputError, RankstackError
from rankstack.io import (
    iter_corpus,
    read_qrels,
    read_retrieve_results,
    read_run,
    read_topics,
    write_corpus,
    write_qrels,
    write_run,
    write_topics,
)
from rankstack.records import Doc, Qrels, Query, Ranking, Run, ScoredDoc

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Lines built from pieces that look like the formats, so the parsers get past their first
# checks often, mixed with arbitrary text (including surrogate-free unicode and control chars).
_pieces = st.sampled_from(["q1", "Q0", "d1", "1", "0", "-3", "2.5", "nan", "inf", "1e999", "tag",
                           "\t", " ", "{", "}", "[", "]", '"id"', '"text"', ":", ",", '"x"',
                           "null", "true", "1" * 30, "\r", "\x00", "\u2028", "\x85", "\ufeff"])
_line = st.one_of(st.text(max_size=40), st.lists(_pieces, max_size=12).map("".join),
                  st.lists(_pieces, max_size=8).map(" ".join))
_lines = st.lists(_line, max_size=12)
_raw = st.one_of(_lines.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
                 st.binary(max_size=200))

READERS = {
    "run": read_run,
    "qrels": read_qrels,
    "topics": read_topics,
    "corpus": lambda p, **kw: list(iter_corpus(p, **kw)),
    "retrieve_results": read_retrieve_results,
}


_counter = itertools.count()
_DIR: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _prop_dir(tmp_path_factory):
    _DIR[:] = [tmp_path_factory.mktemp("prop")]
    yield
    _DIR.clear()


def _tmp_file(data: bytes, suffix: str = ".txt") -> Path:
    p = _DIR[0] / f"f{next(_counter)}{suffix}"
    p.write_bytes(data)
    return p


@SETTINGS
@given(data=_raw, reader=st.sampled_from(sorted(READERS)), skip=st.booleans(),
       suffix=st.sampled_from([".txt", ".txt.gz"]), gzip_it=st.booleans())
def test_readers_raise_only_input_error(data, reader, skip, suffix, gzip_it):
    import gzip

    # .gz paths get either real gzip data or raw (corrupt) bytes
    p = _tmp_file(gzip.compress(data) if gzip_it and suffix.endswith(".gz") else data, suffix)
    try:
        READERS[reader](p, on_error="skip" if skip else "raise")
    except InputError as exc:
        assert isinstance(exc, RankstackError)
        assert str(p) in str(exc)  # every error names the file


@SETTINGS
@given(lines=_lines)
def test_corpus_jsonl_lines_raise_only_input_error(lines):
    # JSON-shaped lines: objects with assorted keys and value types.
    import json

    objs = [json.dumps({"id": ln, "text": ln}) if i % 3 == 0 else "{" + ln + "}"
            for i, ln in enumerate(lines)]
    p = _tmp_file("\n".join(objs).encode("utf-8", "surrogatepass"), ".jsonl")
    try:
        docs = list(iter_corpus(p))
    except InputError as exc:
        assert str(p) in str(exc)
    else:
        assert len({d.id for d in docs}) == len(docs)


_id = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
                                     blacklist_characters="\x1c\x1d\x1e\x1f\x85"),
              min_size=1, max_size=12).filter(lambda s: not any(c.isspace() for c in s))
_score = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def runs(draw) -> Run:
    qids = draw(st.lists(_id, min_size=1, max_size=5, unique=True))
    run = Run(name=draw(_id))
    for q in qids:
        dids = draw(st.lists(_id, min_size=1, max_size=8, unique=True))
        run.add(Ranking(q, [ScoredDoc(d, draw(_score)) for d in dids], run.name))
    return run


@SETTINGS
@given(run=runs(), gz=st.booleans())
def test_valid_runs_round_trip_exactly(run, gz):
    p = _tmp_file(b"", ".txt.gz" if gz else ".txt")
    write_run(run, p)
    back = read_run(p)
    assert back.name == run.name
    assert list(back) == list(run)
    for q in run:
        assert back[q].doc_ids == run[q].doc_ids  # same order (score desc, doc id asc)
        got = back[q].scores()
        for d, s in run[q].scores().items():
            assert got[d] == s and math.copysign(1, got[d]) == math.copysign(1, s)


@SETTINGS
@given(j=st.dictionaries(_id, st.dictionaries(_id, st.integers(-5, 2**40), min_size=1,
                                              max_size=6), min_size=1, max_size=5))
def test_valid_qrels_round_trip(j):
    p = _tmp_file(b"")
    write_qrels(Qrels(j), p)
    assert read_qrels(p).judgments == j


_text = st.text(min_size=1, max_size=40).map(lambda s: " ".join(s.split())).filter(bool)


@SETTINGS
@given(qs=st.dictionaries(_id, _text, min_size=1, max_size=6))
def test_valid_topics_round_trip(qs):
    queries = {q: Query(q, t) for q, t in qs.items()}
    p = _tmp_file(b"")
    write_topics(queries, p)
    assert read_topics(p) == queries


_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@SETTINGS
@given(items=st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                     min_size=1, max_size=10),
                             st.tuples(_any_text, _any_text), max_size=6))
def test_valid_corpus_round_trip(items):
    docs = [Doc(i, t, title) for i, (t, title) in items.items()]
    p = _tmp_file(b"", ".jsonl")
    write_corpus(docs, p)
    assert list(iter_corpus(p)) == docs
