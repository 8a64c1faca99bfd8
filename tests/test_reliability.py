"""Every CLI command through every class of bad input (issue 10): exit code 2, no traceback,
the path (and line/key) in the message, found before any model is loaded; BOM files give the
same figures as without; a replaced input is never resumed; two writers on one journal fail.

The README's "Reliability" table lists the classes and what the toolkit does with each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rankstack.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module", autouse=True)
def _data():
    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError

    try:
        load_dataset("dl19")
    except ConfigError as exc:
        pytest.skip(f"dl19 data not available: {exc}")


@pytest.fixture
def files(tmp_path):
    """A directory, a plain file, a small TREC run of dl19 (top 5 of 3 queries) with topics."""
    from rankstack.datasets import load_dataset
    from rankstack.io import write_run, write_topics
    from rankstack.records import Run

    ds = load_dataset("dl19")
    qids = list(ds.run)[:3]
    run = Run({q: ds.run[q].top(5) for q in qids}, "small")
    (tmp_path / "adir").mkdir()
    (tmp_path / "plain.txt").write_text("x\n")
    write_run(run, tmp_path / "run.txt")
    write_topics({q: ds.queries[q] for q in qids}, tmp_path / "topics.tsv")
    write_topics({q: ds.queries[q] for q in qids[:1]}, tmp_path / "topics_partial.tsv")
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_clean_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err, err
    for n in needles:
        assert str(n) in err, f"{n!r} not in {err!r}"


def fit_config(tmp: Path, **data) -> Path:
    import yaml

    cfg = tmp / "fit.yaml"
    cfg.write_text(yaml.safe_dump({"out_dir": str(tmp / "student"), "max_steps": 1,
                                   "data": {"sources": ["dl19"], **data}}))
    return cfg


# -- 1. a directory where a file is expected ---------------------------------------------------
def dir_as_file_cases(f: Path) -> dict[str, list]:
    d, o = f / "adir", f / "out" / "x.txt"
    return {
        "index": ["index", "--corpus", d, "--index-dir", f / "ix"],
        "retrieve": ["retrieve", "--index-dir", d, "--queries", d, "--out", o],
        "corpus": ["corpus", "--from", d, "--out", o],
        "evaluate-run": ["evaluate", d, "--qrels", "dl19"],
        "evaluate-qrels": ["evaluate", f / "run.txt", "--qrels", d],
        "compare": ["compare", "--dataset", "dl19", "--run", d, "--models", "x", "--out-dir",
                    f / "cmp"],
        "teach": ["teach", "--runs", d, "--out", o],
        "fit": ["fit", "--config", fit_config(f, teacher_run=str(d))],
        "rerank": ["rerank", "--candidates", "dl19", "--run", d, "--out", o],
        "llm-rerank": ["llm-rerank", "--model", "x", "--candidates", "dl19", "--run", d,
                       "--out", o],
        "fuse": ["fuse", d, "dl19", "--out", o],
        "pipeline": ["pipeline", "--dataset", d, "--output-dir", f / "pipe"],
        "serve": ["serve", "--corpus", d],
        "datasets": ["datasets", "--config", d],
    }


@pytest.mark.parametrize("case", ["index", "retrieve", "corpus", "evaluate-run",
                                  "evaluate-qrels", "compare", "teach", "fit", "rerank",
                                  "llm-rerank", "fuse", "pipeline", "serve", "datasets"])
def test_directory_as_input_file(case, files, capsys):
    rc, _, err = run_cli(dir_as_file_cases(files)[case], capsys)
    assert_clean_error(rc, err, files / "adir")
    assert "directory" in err


# -- 2. an output that cannot be written ---------------------------------------------------------
def bad_output_cases(f: Path) -> dict[str, list]:
    d, plain = f / "adir", f / "plain.txt"
    under_file = plain / "sub" / "out.txt"  # its "parent directory" is a file
    return {
        "index": (["index", "--corpus", "dl19", "--index-dir", plain], plain),
        "retrieve": (["retrieve", "--index-dir", d, "--queries", "dl19", "--out", d], d),
        "corpus": (["corpus", "--from", "dl19", "--out", d], d),
        "evaluate": (["evaluate", "dl19", "--qrels", "dl19", "--json", d], d),
        "compare": (["compare", "--dataset", "dl19", "--models", "x", "--out-dir", plain], plain),
        "teach": (["teach", "--runs", "dl19", "--out", d], d),
        "fit": (["fit", "--config", fit_config(f, teacher_run="dl19"), "--set",
                 f"out_dir={plain}"], plain),
        "rerank": (["rerank", "--candidates", "dl19", "--out", d], d),
        "rerank-parent-is-file": (["rerank", "--candidates", "dl19", "--out", under_file],
                                  under_file),
        "llm-rerank": (["llm-rerank", "--model", "x", "--candidates", "dl19", "--out", d], d),
        "fuse": (["fuse", "dl19", "dl19-tasb", "--out", under_file], under_file),
        "pipeline": (["pipeline", "--dataset", "dl19", "--output-dir", plain], plain),
        "serve": (["serve", "--token-file", d], d),
    }


@pytest.mark.parametrize("case", ["index", "retrieve", "corpus", "evaluate", "compare",
                                  "teach", "fit", "rerank", "rerank-parent-is-file",
                                  "llm-rerank", "fuse", "pipeline", "serve"])
def test_unwritable_output(case, files, capsys):
    argv, path = bad_output_cases(files)[case]
    rc, _, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, path)


def test_output_checked_before_the_model_loads(files, capsys):
    # the model does not exist: if it were loaded first, the error would be about the model
    for cmd in ("rerank", "teach"):
        flag = "--candidates" if cmd == "rerank" else "--runs"
        rc, _, err = run_cli([cmd, "--model", files / "no-such-model", "--family",
                              "cross-encoder", flag, "dl19", "--out", files / "adir"], capsys)
        assert_clean_error(rc, err, files / "adir")
        assert "no-such-model" not in err


# -- 3. config files: not UTF-8, wrong types, strings for lists, unknown keys --------------------
COMMANDS = ["index", "retrieve", "corpus", "evaluate", "compare", "datasets", "teach", "fit",
            "rerank", "llm-rerank", "fuse", "pipeline", "serve"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_non_utf8_yaml(cmd, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"depth: 10\nname: caf\xe9\n")  # latin-1 e-acute
    rc, _, err = run_cli([cmd, "--config", bad], capsys)
    assert_clean_error(rc, err, f"{bad}:2", "not valid UTF-8")


WRONG_TYPES = {
    "index": ("k1: ten", "k1", "a number"),
    "retrieve": ("k: ten", "k", "an integer"),
    "corpus": ("sources: dl19", "sources", "a list of strings"),
    "evaluate": ("measures: nDCG@10", "measures", "a list of strings"),
    "compare": ("repeats: ten", "repeats", "an integer"),
    "datasets": ("colour: red", "colour", "unknown key"),
    "teach": ("topics: x.tsv", "topics", "a list of strings"),
    "fit": ("max_steps: ten", "max_steps", "an integer"),
    "rerank": ("depth: ten", "depth", "an integer"),
    "llm-rerank": ("window: [1, 2]", "window", "an integer"),
    "fuse": ("weights: 1.0", "weights", "a list of numbers"),
    "pipeline": ("output_dir: [a, b]", "output_dir", "a string"),
    "serve": ("port: ten", "port", "an integer"),
}


@pytest.mark.parametrize("cmd", COMMANDS)
def test_wrong_yaml_type(cmd, tmp_path, capsys):
    line, key, expected = WRONG_TYPES[cmd]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"# a comment\n{line}\n")
    rc, _, err = run_cli([cmd, "--config", cfg], capsys)
    assert_clean_error(rc, err, f"{cfg}:2", f"'{key}'", expected)


@pytest.mark.parametrize("cmd", ["rerank", "teach", "fit", "evaluate"])
def test_unknown_key_names_file_line_and_suggestion(cmd, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    key = "max_step" if cmd == "fit" else "dept" if cmd != "evaluate" else "measure"
    cfg.write_text(f"{key}: 3\n")
    rc, _, err = run_cli([cmd, "--config", cfg], capsys)
    assert_clean_error(rc, err, f"{cfg}:1", f"unknown key '{key}'", "did you mean")


# -- 4. a UTF-8 byte order mark ------------------------------------------------------------------
def _bom(src: Path, dst: Path) -> Path:
    dst.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    return dst


def test_bom_in_run_and_qrels_gives_the_same_ndcg(files, capsys):
    from rankstack.datasets import DATASETS, data_dir

    qrels = data_dir() / DATASETS["dl19"].qrels
    run = files / "run.txt"
    rc, plain, err = run_cli(["evaluate", run, "--qrels", qrels, "--binary-rel", "2"], capsys)
    assert rc == 0, err
    rc, bom, err = run_cli(["evaluate", _bom(run, files / "bom_run.txt"), "--qrels",
                            _bom(qrels, files / "bom_qrels.txt"), "--binary-rel", "2"], capsys)
    assert rc == 0, err
    line = [x for x in plain.splitlines() if x.startswith("nDCG@10 ")]
    assert line and line == [x for x in bom.splitlines() if x.startswith("nDCG@10 ")]
    assert float(line[0].split()[1]) > 0


def test_bom_in_topics_corpus_and_runs(files, capsys):
    from rankstack.datasets import load_dataset
    from rankstack.io import read_run, write_corpus

    ds = load_dataset("dl19")
    docs = [ds.docs[d] for r in read_run(files / "run.txt").values() for d in r.doc_ids]
    write_corpus(docs, files / "c.jsonl")
    write_corpus(docs, files / "c.tsv")
    for corpus in ("c.jsonl", "c.tsv"):
        bom = _bom(files / corpus, files / f"bom_{corpus}")
        rc, _, err = run_cli(["index", "--corpus", bom, "--index-dir", files / corpus[2:]],
                             capsys)
        assert rc == 0, err
    topics = _bom(files / "topics.tsv", files / "bom_topics.tsv")
    for ix in ("jsonl", "tsv"):
        rc, _, err = run_cli(["retrieve", "--index-dir", files / ix, "--queries", topics,
                              "--k", "3", "--out", files / f"r_{ix}.txt"], capsys)
        assert rc == 0, err
    a, b = read_run(files / "r_jsonl.txt"), read_run(files / "r_tsv.txt")
    assert list(a) == list(read_run(files / "run.txt")) and a.to_dict() == b.to_dict()
    assert not any(q.startswith("\ufeff") for q in a)
    rc, _, err = run_cli(["fuse", _bom(files / "run.txt", files / "bom_run.txt"),
                          files / "run.txt", "--out", files / "fused.txt"], capsys)
    assert rc == 0, err
    assert list(read_run(files / "fused.txt")) == list(read_run(files / "run.txt"))


# -- 5. never silently drop work -----------------------------------------------------------------
def test_teach_with_topics_lacking_some_queries_fails_before_the_teacher(files, capsys):
    rc, _, err = run_cli(["teach", "--runs", files / "run.txt", "--topics",
                          files / "topics_partial.tsv", "--corpus", "dl19", "--model",
                          files / "no-such-model", "--family", "cross-encoder",
                          "--out", files / "t.txt"], capsys)
    assert_clean_error(rc, err, "2 of 3 pooled queries have no text",
                       files / "topics_partial.tsv")


def test_rerank_with_topics_lacking_some_queries_fails(files, capsys):
    rc, _, err = run_cli(["rerank", "--family", "bm25", "--candidates", "dl19", "--run",
                          files / "run.txt", "--topics", files / "topics_partial.tsv",
                          "--out", files / "r.txt"], capsys)
    assert_clean_error(rc, err, "has no text")


@pytest.mark.parametrize("cmd", ["fuse", "teach", "llm-rerank", "rerank"])
def test_empty_candidate_run_is_an_error(cmd, files, capsys):
    empty = files / "empty.txt"
    empty.write_text("")
    argv = {
        "fuse": ["fuse", empty, files / "run.txt", "--out", files / "o.txt"],
        "teach": ["teach", "--runs", empty, "--topics", files / "topics.tsv", "--corpus",
                  "dl19", "--family", "bm25", "--out", files / "o.txt"],
        "llm-rerank": ["llm-rerank", "--family", "bm25", "--candidates", "dl19", "--run",
                       empty, "--out", files / "o.txt"],
        "rerank": ["rerank", "--family", "bm25", "--candidates", "dl19", "--run", empty,
                   "--out", files / "o.txt"],
    }[cmd]
    rc, _, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, "no ")
    assert not (files / "o.txt").exists()


# -- 6. a replaced input between a kill and the resume; two writers on one journal ------------
def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "rankstack.cli", *map(str, argv)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after_first_journal_lines(proc: subprocess.Popen, journal: Path, lines: int = 2
                                    ) -> None:
    """SIGKILL the job once its journal holds the header and a finished query."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= lines:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"job ended (rc {proc.returncode}) before it could be killed: {err[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("job wrote no journal line in time")


@pytest.mark.slow
@pytest.mark.parametrize("cmd", ["teach", "rerank"])
def test_replaced_input_between_kill_and_resume_is_refused(cmd, files, capsys):
    from rankstack.datasets import load_dataset
    from rankstack.io import read_run, write_run
    from rankstack.io.journal import journal_path
    from rankstack.records import Ranking, Run

    ds = load_dataset("dl19")
    qids = list(ds.run)[:12]
    first = Run({q: ds.run[q].top(20) for q in qids}, "cands")
    cands, out = files / "cands.txt", files / "job.txt"
    write_run(first, cands)
    flag = "--runs" if cmd == "teach" else "--run"
    argv = [cmd, flag, cands, "--out", out, "--depth", "20", "--no-progress"]
    argv += (["--topics", files / "all_topics.tsv", "--corpus", "dl19", "--chunk-size", "1"]
             if cmd == "teach" else ["--candidates", "dl19", "--set", "chunk_pairs=20"])
    if cmd == "teach":
        from rankstack.io import write_topics

        write_topics({q: ds.queries[q] for q in qids}, files / "all_topics.tsv")
    journal = journal_path(out)
    _kill_after_first_journal_lines(_start(argv, files), journal)
    done_before = journal.read_bytes().count(b"\n") - 1
    assert done_before >= 1 and not out.exists()

    # the candidates file is replaced: same queries, the first query's ranking reversed
    q0 = qids[0]
    changed = Run({q: (Ranking.from_order(q, list(reversed(first[q].doc_ids)), "x")
                       if q == q0 else first[q]) for q in qids}, "cands")
    write_run(changed, cands)
    rc, _, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, str(journal), "inputs changed", "remove it")
    assert not out.exists()

    # the original file back: the journal is valid again and resumed, not redone
    write_run(first, cands)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert len(read_run(out)) == len(qids)
    if cmd == "teach":
        assert f"resumed {done_before}," in err
    else:
        report = json.loads(Path(str(out) + ".report.json").read_text())
        assert report["resumed_queries"] == done_before
    assert not journal.exists()


@pytest.mark.parametrize("cmd", ["teach", "rerank"])
def test_two_writers_on_one_journal(cmd, files, capsys):
    from rankstack.io.journal import journal_path

    out = files / "job.txt"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from rankstack.io.journal import acquire_lock; acquire_lock(sys.argv[2]); "
         "print('locked', flush=True); time.sleep(60)", SRC, str(journal_path(out))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        flag = "--runs" if cmd == "teach" else "--candidates"
        rc, _, err = run_cli([cmd, flag, "dl19", "--family", "bm25", "--out", out], capsys)
        assert_clean_error(rc, err, str(journal_path(out)), "another rankstack process",
                           f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()


def test_corrupt_journal_line_says_how_to_recover(files, capsys):
    from rankstack.io.journal import journal_path

    out = files / "job.txt"
    j = journal_path(out)
    j.write_text('{"rankstack_rerank_journal": 1}\nnot json\n{"q": "1", "d": []}\n')
    rc, _, err = run_cli(["rerank", "--family", "bm25", "--candidates", "dl19", "--out", out],
                         capsys)
    assert rc == 2 and "Traceback" not in err
    # the header differs (another job) or, with a matching header, line 2 is named
    assert str(j) in err and ("remove it" in err or "delete" in err)


# -- 7. ids that cannot be written -----------------------------------------------------------------
def test_write_run_with_unencodable_id(tmp_path):
    from rankstack.errors import InputError
    from rankstack.io import write_run
    from rankstack.records import Ranking, Run

    run = Run({"q\udc80": Ranking.from_scores("q\udc80", {"d1": 1.0}, "m")}, "r")
    with pytest.raises(InputError, match="not encodable as UTF-8"):
        write_run(run, tmp_path / "r.txt")
    assert not (tmp_path / "r.txt").exists()


def test_trec_numbers_are_ascii(write_file):
    from rankstack.errors import InputError
    from rankstack.io import read_qrels, read_run

    with pytest.raises(InputError, match=r":1: field 'rank': not an integer"):
        read_run(write_file("r.txt", "1 Q0 d1 1_000 1.5 t\n"))
    with pytest.raises(InputError, match=r":1: field 'score': not a number"):
        read_run(write_file("r2.txt", "1 Q0 d1 1 \u0661.5 t\n"))
    with pytest.raises(InputError, match=r":2: field 'relevance': not an integer"):
        read_qrels(write_file("q.txt", "1 0 d1 1\n1 0 d2 \u0662\n"))
