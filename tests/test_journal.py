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


def test_corrupt_line_message_says_how_to_recover(tmp_path):
    j = RankingJournal(tmp_path / "j.jsonl", {"job": 1})
    with j.writer() as w:
        w.write_one(r("a"))
        w.write_one(r("b"))
    lines = j.path.read_text().splitlines()
    j.path.write_text("\n".join([lines[0], "{broken", lines[2]]) + "\n")
    with pytest.raises(InputError, match=r"j\.jsonl:2: corrupt journal line.*to recover, delete "
                                         r".*j\.jsonl to start over.*or delete line 2"):
        j.load()


def test_inputs_fingerprint_follows_content_not_paths():
    from rankstack.io.journal import inputs_fingerprint
    from rankstack.records import Doc, Query, Run

    run = Run({"q": r("q", 2)}, "x")
    queries = {"q": Query("q", "text")}
    docs = {"qd0": Doc("qd0", "a"), "qd1": Doc("qd1", "b")}
    base = inputs_fingerprint(run, queries, docs)
    assert base == inputs_fingerprint(Run({"q": r("q", 2)}, "renamed"), queries, docs)
    assert base != inputs_fingerprint(run, {"q": Query("q", "other text")}, docs)
    assert base != inputs_fingerprint(run, queries, {**docs, "qd1": Doc("qd1", "changed")})
    assert base != inputs_fingerprint(Run({"q": r("q", 3)}, "x"), queries, docs)


def test_header_mismatch_names_what_changed(tmp_path):
    j = RankingJournal(tmp_path / "j.jsonl", {"job": 1, "inputs": "aaa"})
    with j.writer() as w:
        w.write_one(r("a"))
    with pytest.raises(ConfigError, match="inputs changed.*remove it to start over"):
        RankingJournal(j.path, {"job": 1, "inputs": "bbb"}).load()
