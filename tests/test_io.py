"""Readers and writers of rankstack.io: round trips, located errors, skip mode, atomic writes."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from rankstack.errors import InputError
from rankstack.io import (
    atomic_write,
    iter_corpus,
    read_corpus,
    read_qrels,
    read_retrieve_results,
    read_run,
    read_topics,
    write_corpus,
    write_qrels,
    write_retrieve_results,
    write_run,
    write_topics,
)
from rankstack.records import Doc, Qrels, Query, Ranking, Run, ScoredDoc


def assert_located(exc: InputError, path, line: int, field: str | None = None) -> None:
    """The message names the file and line (and field); the attributes agree."""
    msg = str(exc)
    assert f"{path}:{line}:" in msg, msg
    assert exc.path == str(path) and exc.line == line
    if field is not None:
        assert f"field '{field}'" in msg, msg
        assert exc.field == field


def sample_run() -> Run:
    run = Run(name="myrun")
    run.add(Ranking("q1", [ScoredDoc("d1", 2.5), ScoredDoc("d2", 2.5), ScoredDoc("d3", -1.0 / 3)],
                    "myrun"))
    run.add(Ranking("1042", [ScoredDoc("a", 1e-12), ScoredDoc("b", 123456.789)], "myrun"))
    return run


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["run.txt", "run.txt.gz"])
def test_run_round_trip(tmp_path, name):
    run = sample_run()
    p = tmp_path / name
    write_run(run, p)
    back = read_run(p)
    assert back.name == "myrun"
    assert back.to_dict() == run.to_dict()  # exact floats (repr round-trips)
    assert back["q1"].doc_ids == ["d1", "d2", "d3"]  # tie: doc id ascending
    lines = (p.read_bytes() if not name.endswith(".gz") else __import__("gzip").decompress(
        p.read_bytes())).decode().splitlines()
    assert lines[0] == "q1 Q0 d1 1 2.5 myrun"
    assert lines[1].split()[3] == "2"


@pytest.mark.parametrize("name", ["qrels.txt", "qrels.txt.gz"])
def test_qrels_round_trip(tmp_path, name):
    q = Qrels({"1": {"d1": 0, "d2": 3, "d3": -1}, "q2": {"x": 1}})
    p = tmp_path / name
    write_qrels(q, p)
    back = read_qrels(p)
    assert back.judgments == q.judgments
    assert back.relevant("1", 2) == ["d2"]


def test_qrels_repeated_same_grade_is_kept_once(write_file):
    p = write_file("q.txt", "1 0 d1 2\n1 0 d1 2\n")
    assert read_qrels(p).judgments == {"1": {"d1": 2}}


@pytest.mark.parametrize("name", ["topics.tsv", "topics.tsv.gz"])
def test_topics_round_trip(tmp_path, name):
    qs = {"1": Query("1", "what is a cat"), "q-2": Query("q-2", "ünïcode ☃ query")}
    p = tmp_path / name
    write_topics(qs, p)
    assert read_topics(p) == qs


def test_topics_text_with_tab_kept_and_blank_lines_ignored(write_file):
    p = write_file("t.tsv", "1\ta\tb\n\n   \n2\tc\r\n")
    assert read_topics(p) == {"1": Query("1", "a\tb"), "2": Query("2", "c")}


def test_write_topics_normalizes_whitespace(tmp_path):
    p = tmp_path / "t.tsv"
    write_topics([Query("1", " a\tb\n c ")], p)
    assert read_topics(p) == {"1": Query("1", "a b c")}


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz"])
def test_corpus_round_trip(tmp_path, name):
    docs = [Doc("d1", "text one"), Doc("d2", "text ☃ two", "A title"), Doc("3", "")]
    p = tmp_path / name
    assert write_corpus(docs, p) == 3
    assert list(iter_corpus(p)) == docs
    assert read_corpus(p)["d2"].title == "A title"


@pytest.mark.parametrize("id_key", ["id", "docid", "_id"])
@pytest.mark.parametrize("text_key", ["text", "contents"])
def test_corpus_key_variants(write_file, id_key, text_key):
    lines = [json.dumps({id_key: "a", text_key: "hello"}),
             json.dumps({id_key: 7, "title": "T", text_key: "world"})]
    p = write_file("c.jsonl", "\n".join(lines) + "\n\n")
    assert list(iter_corpus(p)) == [Doc("a", "hello"), Doc("7", "world", "T")]


def test_retrieve_results_round_trip(tmp_path):
    run = sample_run()
    queries = {"q1": Query("q1", "first query"), "1042": Query("1042", "second")}
    docs = {d: Doc(d, f"passage {d}") for d in ("d1", "d2", "d3", "a", "b")}
    docs["b"] = Doc("b", "body", "Title")
    p = tmp_path / "rr.json"
    assert write_retrieve_results(run, queries, docs, p) == 0
    raw = json.loads(p.read_text())
    assert raw[1]["hits"][0]["qid"] == 1042  # numeric qids written as numbers, like rank_llm
    back = read_retrieve_results(p)
    assert back.queries == queries
    assert back.run.to_dict() == run.to_dict()
    assert back.docs["d1"] == docs["d1"]
    assert back.docs["b"].text == "Title body"  # title is folded into content


def test_retrieve_results_writer_leaves_out_empty_rankings(tmp_path, caplog):
    run = sample_run()
    run.add(Ranking("q3", [], "myrun"))
    queries = {q: Query(q, "t") for q in ("q1", "1042", "q3")}
    docs = {d: Doc(d, "x") for d in ("d1", "d2", "d3", "a", "b")}
    p = tmp_path / "rr.json"
    with caplog.at_level(logging.WARNING, logger="rankstack.io"):
        assert write_retrieve_results(run, queries, docs, p) == 1
    assert "q3" in caplog.text
    assert set(read_retrieve_results(p).run) == {"q1", "1042"}


def test_retrieve_results_real_dl19_file(dl19):
    assert len(dl19.queries) == 43 and dl19.run.n_pairs == 4300
    assert all(len(r) == 100 for r in dl19.run.values())


# --------------------------------------------------------------------------- writer checks
@pytest.mark.parametrize("bad", ["d 1", "", "d\n1"])
def test_write_run_rejects_ids_that_corrupt_the_file(tmp_path, bad):
    run = Run({"q": Ranking("q", [ScoredDoc(bad, 1.0)])})
    p = tmp_path / "r.txt"
    with pytest.raises(InputError, match="doc_id"):
        write_run(run, p)
    assert not p.exists() and os.listdir(tmp_path) == []


def test_write_topics_rejects_tab_in_id(tmp_path):
    with pytest.raises(InputError, match="query_id"):
        write_topics([Query("a\tb", "x")], tmp_path / "t.tsv")


# --------------------------------------------------------------------------- malformed input
RUN_OK = "q1 Q0 d1 1 1.5 tag\n"


@pytest.mark.parametrize(
    ("bad_line", "field", "needle"),
    [
        ("q1 Q0 d2 2 1.5\n", "columns", "expected 6 columns"),
        ("q1 Q0 d2 2 1.5 tag extra\n", "columns", "found 7"),
        ("q1 Q0 d2 2 high tag\n", "score", "not a number"),
        ("q1 Q0 d2 2 nan tag\n", "score", "not a finite number"),
        ("q1 Q0 d2 2 NaN tag\n", "score", "not a finite number"),
        ("q1 Q0 d2 2 inf tag\n", "score", "not a finite number"),
        ("q1 Q0 d2 2 -Infinity tag\n", "score", "not a finite number"),
        ("q1 Q0 d2 two 1.0 tag\n", "rank", "not an integer"),
        ("q1 Q0 d1 2 1.0 tag\n", "doc_id", "duplicate (query, doc) pair (q1, d1)"),
    ],
)
def test_run_errors(write_file, bad_line, field, needle):
    p = write_file("run.txt", RUN_OK + "\n" + bad_line)
    with pytest.raises(InputError) as ei:
        read_run(p)
    assert_located(ei.value, p, 3, field)
    assert needle in str(ei.value)


@pytest.mark.parametrize(
    ("bad_line", "field", "needle"),
    [
        ("1 0 d2\n", "columns", "expected 4 columns"),
        ("1 0 d2 high\n", "relevance", "not an integer"),
        ("1 0 d2 1.5\n", "relevance", "not an integer"),
        ("1 0 d1 0\n", "relevance", "conflicting grades 2 and 0"),
    ],
)
def test_qrels_errors(write_file, bad_line, field, needle):
    p = write_file("qrels.txt", "1 0 d1 2\n" + bad_line)
    with pytest.raises(InputError) as ei:
        read_qrels(p)
    assert_located(ei.value, p, 2, field)
    assert needle in str(ei.value)


@pytest.mark.parametrize(
    ("bad_line", "field", "needle"),
    [
        ("2 no tab here\n", "columns", "query_id<TAB>text"),
        ("\tan orphan text\n", "query_id", "empty id"),
        ("2\t   \n", "text", "empty query text"),
        ("1\tother text\n", "query_id", "repeated with different text"),
    ],
)
def test_topics_errors(write_file, bad_line, field, needle):
    p = write_file("topics.tsv", "1\tfirst\n" + bad_line)
    with pytest.raises(InputError) as ei:
        read_topics(p)
    assert_located(ei.value, p, 2, field)
    assert needle in str(ei.value)


@pytest.mark.parametrize(
    ("bad_line", "field", "needle"),
    [
        ('{"id": "d2", "text": "x"\n', None, "invalid JSON"),
        ("not json at all\n", None, "invalid JSON"),
        ('["d2", "x"]\n', None, "expected a JSON object"),
        ('{"id": "d2", "title": "t"}\n', "text", "missing text"),
        ('{"text": "x"}\n', "id", "missing id"),
        ('{"id": "", "text": "x"}\n', "id", "non-empty"),
        ('{"_id": null, "text": "x"}\n', "_id", "non-empty"),
        ('{"id": "d2", "text": 5}\n', "text", "text must be a string"),
        ('{"id": "d2", "text": "x", "title": 3}\n', "title", "title must be a string"),
        ('{"docid": "d1", "text": "again"}\n', "docid", "duplicate doc id 'd1'"),
        ('{"id": ' + "9" * 5000 + ', "text": "x"}\n', None, "invalid JSON"),
        ("[" * 100_000 + "\n", None, "invalid JSON"),
    ],
)
def test_corpus_errors(write_file, bad_line, field, needle):
    p = write_file("c.jsonl", '{"id": "d1", "text": "ok"}\n' + bad_line)
    with pytest.raises(InputError) as ei:
        list(iter_corpus(p))
    assert_located(ei.value, p, 2, field)
    assert needle in str(ei.value)


@pytest.mark.parametrize(
    ("reader", "good"),
    [
        (read_run, RUN_OK),
        (read_qrels, "1 0 d1 2\n"),
        (read_topics, "1\tfirst\n"),
        (lambda p: list(iter_corpus(p)), '{"id": "d1", "text": "ok"}\n'),
    ],
)
@pytest.mark.parametrize("name", ["f.txt", "f.txt.gz"])
def test_non_utf8_is_located(write_file, reader, good, name):
    p = write_file(name, good.encode() + b"q\xff\xfe broken \x80\n")
    with pytest.raises(InputError) as ei:
        reader(p)
    assert_located(ei.value, p, 2)
    assert "not valid UTF-8" in str(ei.value)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="does not exist") as ei:
        read_run(p)
    assert str(p) in str(ei.value)


def test_corrupt_gzip_is_input_error(write_file, tmp_path):
    p = tmp_path / "run.txt.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate")
    with pytest.raises(InputError, match="compressed") as ei:
        read_run(p)
    assert str(p) in str(ei.value)


# -------------------------------------------------------------- retrieve-results JSON errors
def _hit(qid=1, docid="d1", score=1.0, content="text", **kw):
    return {"content": content, "qid": qid, "docid": docid, "rank": 1, "score": score, **kw}


def _rr_file(write_file, entries) -> tuple:
    """Write entries one per line after a '[' line, so entry i starts on line i + 2."""
    body = "[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n"
    return write_file("rr.json", body)


@pytest.mark.parametrize(
    ("bad_entry", "field", "needle"),
    [
        ({"query": "q", "hits": []}, "[1].hits", "empty 'hits'"),
        ({"query": "q"}, "[1]", "'query' and 'hits'"),
        ({"query": "q", "hits": [_hit(2, score=None)]}, "[1].hits[0].score", "finite number"),
        ({"query": "q", "hits": [_hit(2, score="1.0")]}, "[1].hits[0].score", "finite number"),
        ({"query": "q", "hits": [_hit(2, "x"), _hit(2, "x")]}, "[1].hits[1].docid", "duplicate"),
        ({"query": "q", "hits": [_hit(2, "x"), _hit(3, "y")]}, "[1].hits[1].qid", "differs"),
        ({"query": "q", "hits": [_hit(2, "")]}, "[1].hits[0]", "empty id"),
        ({"query": "q", "hits": [{"qid": 2, "docid": "x", "score": 1}]}, "[1].hits[0]",
         "missing 'content'"),
        ({"query": "q", "hits": [_hit(2, content=None)]}, "[1].hits[0].content", "string"),
        ({"query": "", "hits": [_hit(2)]}, "[1].query", "non-empty string"),
        ({"query": "q", "hits": [_hit(1, "z")]}, "[1]", "appears twice"),
    ],
)
def test_retrieve_results_errors(write_file, bad_entry, field, needle):
    p = _rr_file(write_file, [{"query": "ok", "hits": [_hit()]}, bad_entry])
    with pytest.raises(InputError) as ei:
        read_retrieve_results(p)
    assert_located(ei.value, p, 3, field)
    assert needle in str(ei.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_retrieve_results_non_finite_score(write_file, literal):
    good = json.dumps({"query": "ok", "hits": [_hit()]})
    bad = json.dumps({"query": "q", "hits": [_hit(2, score=0.0)]}).replace("0.0", literal)
    p = write_file("rr.json", f"[\n{good},\n\n{bad}\n]")
    with pytest.raises(InputError) as ei:
        read_retrieve_results(p)
    assert_located(ei.value, p, 4, "[1].hits[0].score")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('[\n{"query": "q",\n "hits": [}\n]', 3, "invalid JSON"),
        ('{"query": "q"}', 1, "expected a JSON list"),
        ("", 1, "empty file"),
        ('[\n{"query": "q", "hits": []}\n]\n]', 4, "extra data"),
        ('[\n{"query": "q", "hits": []}\n\n{"x": 1}]', 4, "expected ',' or ']'"),
    ],
)
def test_retrieve_results_invalid_json(write_file, text, line, needle):
    p = write_file("rr.json", text)
    with pytest.raises(InputError) as ei:
        read_retrieve_results(p)
    assert_located(ei.value, p, line)
    assert needle in str(ei.value)


def test_retrieve_results_non_utf8(write_file):
    good = json.dumps({"query": "ok", "hits": [_hit()]}).encode()
    p = write_file("rr.json", b"[\n" + good + b",\n" + good.replace(b"text", b"t\xffxt") + b"\n]")
    with pytest.raises(InputError, match="UTF-8") as ei:
        read_retrieve_results(p)
    assert_located(ei.value, p, 3)


def test_retrieve_results_empty_list_is_empty(write_file):
    c = read_retrieve_results(write_file("rr.json", " [ ] "))
    assert len(c.run) == 0 and c.queries == {}


# --------------------------------------------------------------------------- skip mode
def test_skip_mode_run_counts_and_keeps_good_lines(write_file, caplog):
    p = write_file("run.txt", "q1 Q0 d1 1 1.5 t\nq1 Q0 d2 2 nan t\nbad line\n"
                              "q1 Q0 d3 3 0.5 t\nq2 Q0 d1 1 9 t\nq2 Q0 d1 2 8 t\n")
    skipped: list[InputError] = []
    with caplog.at_level(logging.WARNING, logger="rankstack.io"):
        run = read_run(p, on_error="skip", skipped=skipped)
    assert [e.line for e in skipped] == [2, 3, 6]
    assert run.to_dict() == {"q1": {"d1": 1.5, "d3": 0.5}, "q2": {"d1": 9.0}}
    assert "skipped 3 bad record(s)" in caplog.text and str(p) in caplog.text


def test_skip_mode_qrels_topics_corpus(write_file):
    skipped: list[InputError] = []
    q = read_qrels(write_file("q.txt", "1 0 a 1\n1 0 b x\n1 0 c 2\n"), on_error="skip",
                   skipped=skipped)
    assert q.judgments == {"1": {"a": 1, "c": 2}} and len(skipped) == 1
    t = read_topics(write_file("t.tsv", "1\ta\nnotab\n2\tb\n"), on_error="skip", skipped=skipped)
    assert set(t) == {"1", "2"} and len(skipped) == 2
    docs = list(iter_corpus(write_file("c.jsonl", '{"id": "a", "text": "x"}\n{oops\n'
                                                  '{"id": "a", "text": "y"}\n'
                                                  '{"id": "b", "text": "z"}\n'),
                            on_error="skip", skipped=skipped))
    assert [d.id for d in docs] == ["a", "b"] and len(skipped) == 4
    assert [e.line for e in skipped[2:]] == [2, 3]


def test_skip_mode_retrieve_results(write_file):
    p = _rr_file(write_file, [{"query": "ok", "hits": [_hit()]}, {"query": "q", "hits": []},
                              {"query": "r", "hits": [_hit(3, "d9")]}])
    skipped: list[InputError] = []
    c = read_retrieve_results(p, on_error="skip", skipped=skipped)
    assert set(c.run) == {"1", "3"} and [e.line for e in skipped] == [3]


def test_skip_mode_does_not_skip_undecodable_files(write_file):
    # Bytes that are not UTF-8 stop the read in either mode: lines after them cannot be trusted.
    p = write_file("run.txt", b"q1 Q0 d1 1 1 t\n\xff\n")
    with pytest.raises(InputError):
        read_run(p, on_error="skip")


def test_bad_policy_name():
    with pytest.raises(ValueError, match="on_error"):
        read_run("x", on_error="ignore")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- atomic write
class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", ["out.txt", "out.txt.gz"])
def test_atomic_write_keeps_old_file_on_error(tmp_path, name):
    p = tmp_path / name
    write_run(sample_run(), p)
    before = p.read_bytes()
    with pytest.raises(Boom), atomic_write(p) as fh:
        fh.write("partial line that must never land\n" * 1000)
        raise Boom()
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == [name]  # no temp file left behind


def test_atomic_write_via_writer_generator_error(tmp_path):
    p = tmp_path / "c.jsonl"
    write_corpus([Doc("a", "old")], p)

    def docs():
        yield Doc("b", "new")
        raise Boom()

    with pytest.raises(Boom):
        write_corpus(docs(), p)
    assert list(iter_corpus(p)) == [Doc("a", "old")]
    assert os.listdir(tmp_path) == ["c.jsonl"]


def test_atomic_write_new_file_mode_and_no_partial(tmp_path):
    p = tmp_path / "sub" / "new.txt"
    with pytest.raises(Boom), atomic_write(p) as fh:
        fh.write("x")
        raise Boom()
    assert not p.exists() and os.listdir(p.parent) == []
    with atomic_write(p) as fh:
        fh.write("ok\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
