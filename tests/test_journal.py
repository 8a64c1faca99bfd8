"""RankingJournal: resume records, torn-line handling, header guard."""

from __future__ import annotations

import pytest

from rankstack.errors import ConfigError, InputError
from rankstack.io.journal import RankingJournal
from rankstack.records import Ranking


def r(q: str, n: int = 2) -> Ranking:
    return Ranking.from_scores(q, {f"{q}d{i}": float(i) for i in range(n)}, "m")


def test_round_trip_and_append(tmp_path):
    j = RankingJournal(tmp_path / "j.jsonl", {"job": 1})
    assert j.load() == {}
    with j.writer() as w:
        w.write([r("a"), r("b")])
    with j.writer() as w:
        w.write([r("c")])
    done = j.load()
    assert sorted(done) == ["a", "b", "c"]
    assert done["a"].doc_ids == r("a").doc_ids and done["a"].scorer == "m"
    j.remove()
    assert not j.path.exists()


def test_torn_last_line_is_ignored_and_cut_before_appending(tmp_path):
    j = RankingJournal(tmp_path / "j.jsonl", {"job": 1})
    with j.writer() as w:
        w.write([r("a")])
    with open(j.path, "a") as fh:
        fh.write('{"q": "b", "d": [["x", 1')
    assert sorted(j.load()) == ["a"]
    with j.writer() as w:
        w.write([r("b")])
    assert sorted(j.load()) == ["a", "b"]
    assert j.path.read_text().count("\n") == 3  # header, a, b: the torn bytes are gone


def test_corrupt_middle_line_and_foreign_header_are_errors(tmp_path):
    j = RankingJournal(tmp_path / "j.jsonl", {"job": 1})
    with j.writer() as w:
        w.write([r("a")])
    text = j.path.read_text()
    j.path.write_text(text + "garbage\n" + text.splitlines()[1] + "\n")
    with pytest.raises(InputError, match=r"j\.jsonl:3"):
        j.load()
    other = RankingJournal(tmp_path / "k.jsonl", {"job": 1})
    with other.writer() as w:
        w.write([r("a")])
    with pytest.raises(ConfigError, match="journal of another job"):
        RankingJournal(other.path, {"job": 2}).load()
