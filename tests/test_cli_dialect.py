"""One CLI dialect (issue 9.5) and the new-user traps of issue 15 (items 2, 5, 8-tables):
one dataset-or-file resolver, one KEY=VALUE parser, one config schema mechanism, the resolved
config beside every run, no import circle, the relevance threshold in headers and a warning,
TSV corpora, tables that keep their headers in a narrow terminal."""

from __future__ import annotations

import ast
import io
import logging
import os
import re
from pathlib import Path

import pytest

from rankstack.cli import main
from rankstack.errors import ConfigError, InputError
from rankstack.evaluate.report import comparison_table

SRC = Path(__file__).resolve().parents[1] / "src"


# -- no import circle -----------------------------------------------------------------------------
def _module_graph() -> dict[str, set[str]]:
    """rankstack's import graph from the source: imports at any depth as written (module
    level, inside functions and in ``if TYPE_CHECKING:`` blocks), as the project's
    import-circle hook reads them."""
    files = {}
    for p in (SRC / "rankstack").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = p
    return {mod: _imports(mod, path, files) for mod, path in files.items()}


def _imports(mod: str, path: Path, files: dict[str, Path]) -> set[str]:
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    edges: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_Import(self, node: ast.Import) -> None:
            edges.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                up = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{up}.{base}" if base else up
            for a in node.names:  # `from pkg import submodule` imports the submodule
                edges.add(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return {e for e in edges if e in files and e != mod}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_rankstack():
    graph = _module_graph()
    assert "rankstack.evaluate.report" in graph
    assert "rankstack.evaluate.report" not in graph["rankstack.evaluate.evaluator"]
    assert "rankstack.evaluate.compare" not in graph["rankstack.evaluate.compare_report"]
    assert _cycles(graph) == []


# -- one resolver ------------------------------------------------------------------------------
@pytest.fixture
def data():
    from rankstack.datasets import data_dir

    try:
        return data_dir()
    except ConfigError as exc:
        pytest.skip(f"data not available: {exc}")


def test_resolver_precedence(data, tmp_path, monkeypatch):
    from rankstack.sources import classify, load_qrels_arg, load_queries_arg, load_run_arg

    monkeypatch.chdir(tmp_path)
    assert classify("dl19") == "dataset" and classify("irds:x") == "irds"
    assert load_qrels_arg("dl19").binary_rel == 2
    (tmp_path / "dl19").write_text("1 Q0 d1 1 2.0 mine\n")  # a file named like a dataset wins
    assert classify("dl19") == "file"
    assert list(load_run_arg("dl19")) == ["1"]
    qrels_file = tmp_path / "q.txt"
    qrels_file.write_text("1 0 d1 3\n")
    assert load_qrels_arg(qrels_file).binary_rel is None  # a file states no threshold
    (tmp_path / "dl19").unlink()
    (tmp_path / "dl19").mkdir()  # a directory named like a dataset does not hide it
    assert classify("dl19") == "dataset"
    with pytest.raises(ConfigError, match="neither a file nor a dataset name"):
        classify("dl91")
    with pytest.raises(InputError, match="does not exist"):
        load_queries_arg("topics.tsv")
    (tmp_path / "adir").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load_run_arg("adir")


def test_one_resolver_and_one_settings_parser_in_the_cli():
    """No command carries its own copy (the ones issue 9.5 found are gone)."""
    for path in (SRC / "rankstack" / "cli").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert 'partition("=")' not in text, f"{path.name}: own KEY=VALUE parser"
        assert not re.search(r"in DATASETS(?!\.)", text), \
            f"{path.name}: own dataset-or-file resolver"


def test_settings_parser():
    from rankstack.config import apply_overrides, parse_setting, parse_settings

    assert parse_setting("batch-size=32") == ("batch_size", 32)
    assert parse_setting("ids=[a, b]") == ("ids", ["a", "b"])
    assert parse_setting("prefix=query: ") == ("prefix", "query: ")  # text, not a mapping
    assert parse_setting("m={a: 1}") == ("m", {"a": 1})
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_setting("m=[a, b")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_setting("novalue")
    assert parse_settings({"pooling": "mean"}) == {"pooling": "mean"}
    assert parse_settings(["a=1", ("b", 2)]) == {"a": 1, "b": 2}
    with pytest.raises(ConfigError, match="unknown encoder setting 'x'"):
        parse_settings(["x=1"], allowed=("pooling",), what="encoder")
    assert apply_overrides({"data": {"depth": 1, "pad": True}}, ["data.depth=5"]) == \
        {"data": {"depth": 5, "pad": True}}


def test_schema_from_options():
    import argparse

    from rankstack.schema import from_parser

    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--topics", nargs="*", default=[])
    p.add_argument("--mode", choices=["a", "b"], default="a")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--name", default=None)
    s = from_parser(p, "'test'")
    assert s.validate({"depth": "3", "topics": ["x"], "mode": "b", "fast": True, "name": 7}) == \
        {"depth": 3, "topics": ["x"], "mode": "b", "fast": True, "name": "7"}
    for bad, msg in (({"depth": "ten"}, "'depth': expected an integer"),
                     ({"depth": True}, "'depth': expected an integer"),
                     ({"depth": None}, "'depth': expected an integer, got null"),
                     ({"topics": "x.tsv"}, "'topics': expected a list of strings"),
                     ({"mode": "c"}, "'mode': expected one of a, b"),
                     ({"dpth": 1}, "unknown key 'dpth'.*did you mean 'depth'")):
        with pytest.raises(ConfigError, match=msg):
            s.validate(bad, "f.yaml", {k: 4 for k in bad})


# -- the resolved config beside each run ----------------------------------------------------------
def test_resolved_config_beside_the_run_reproduces_it(data, tmp_path, capsys):
    import yaml

    out = tmp_path / "f.txt"
    assert main(["fuse", "dl19", "dl19-tasb", "--method", "combsum", "--norm", "zscore",
                 "--out", str(out)]) == 0
    cfg = Path(str(out) + ".config.yaml")
    saved = yaml.safe_load(cfg.read_text())
    assert saved["runs"] == ["dl19", "dl19-tasb"] and saved["method"] == "combsum"
    assert capsys.readouterr().out == ""  # logs on stderr, nothing on stdout
    first = out.read_text()
    out.unlink()
    assert main(["fuse", "--config", str(cfg)]) == 0
    assert out.read_text() == first


# -- relevance threshold ---------------------------------------------------------------------------
def test_threshold_in_headers_and_warning_for_graded_files(caplog):
    from rich.console import Console

    from rankstack.evaluate import Evaluator, display_name
    from rankstack.records import Qrels, Run

    graded = Qrels({"1": {"a": 3, "b": 1}, "2": {"c": 2}}, name="graded.txt")
    run = Run.from_dict({"1": {"a": 1.0, "b": 2.0}, "2": {"c": 1.0}}, name="r")
    with caplog.at_level(logging.WARNING, logger="rankstack.evaluate"):
        comp = Evaluator(["RR@10", "nDCG@10", "P(rel=2)@5"], graded).compare([run])
    assert "graded qrels (grades up to 3)" in caplog.text and "--binary-rel" in caplog.text
    console = Console(file=io.StringIO(), width=120)
    console.print(comparison_table(comp))
    text = console.file.getvalue()
    assert "RR(rel=1)@10" in text and "P(rel=2)@5" in text and "nDCG@10" in text
    assert display_name("R@100", 2) == "R(rel=2)@100"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rankstack.evaluate"):
        Evaluator(["RR@10"], graded, binary_rel=1)  # stated: no warning
        graded.binary_rel = 2
        assert Evaluator(["RR@10"], graded).binary_rel == 2  # the qrels' own threshold
        Evaluator(["RR@10"], Qrels({"1": {"a": 1}}))  # binary judgments: nothing to warn about
    assert "graded" not in caplog.text


def test_evaluate_cli_warns_for_a_graded_qrels_file(data, capsys, caplog):
    from rankstack.datasets import DATASETS

    qrels = data / DATASETS["dl19"].qrels
    with caplog.at_level(logging.WARNING, logger="rankstack.evaluate"):
        assert main(["evaluate", "dl19", "--qrels", str(qrels), "--measures", "RR@10"]) == 0
    assert "RR(rel=1)@10" in capsys.readouterr().out and "graded qrels" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rankstack.evaluate"):
        assert main(["evaluate", "dl19", "--qrels", "dl19", "--measures", "RR@10"]) == 0
        assert main(["evaluate", "dl19", "--qrels", str(qrels), "--binary-rel", "1"]) == 0
    assert "RR(rel=2)@10" in capsys.readouterr().out and "graded qrels" not in caplog.text


def test_table_headers_do_not_wrap_in_a_narrow_terminal():
    from rich.console import Console

    from rankstack.evaluate import Evaluator
    from rankstack.records import Qrels, Run

    qrels = Qrels({"1": {"a": 2, "b": 1}}, binary_rel=2)
    runs = [Run.from_dict({"1": {"a": 1.0, "b": 2.0}}, name="a-long-run-name-" * 3),
            Run.from_dict({"1": {"a": 2.0, "b": 1.0}}, name="other")]
    comp = Evaluator(["nDCG@10", "RR@10", "R@100"], qrels).compare(runs, rounds=50)
    for width in (60, 80):
        console = Console(file=io.StringIO(), width=width)
        console.print(comparison_table(comp))
        lines = console.file.getvalue().splitlines()
        header = next(ln for ln in lines if "nDCG@10" in ln)
        assert "RR(rel=2)@10" in header and "R(rel=2)@100" in header and "queries" in header


# -- TSV corpora -----------------------------------------------------------------------------------
def test_tsv_corpus_two_and_three_columns_with_quoting(write_file):
    from rankstack.io import read_corpus, write_corpus

    p = write_file("c.tsv", 'd1\tplain text\nd2\t"A title"\t"tab\there, ""quotes"" and\n'
                            'a newline"\nd3\t5" screen, literal quote\n\n')
    docs = read_corpus(p)
    assert [d.id for d in docs.values()] == ["d1", "d2", "d3"]
    assert docs["d2"].title == "A title" and docs["d2"].text == 'tab\there, "quotes" and\na newline'
    assert docs["d3"].text == '5" screen, literal quote' and docs["d1"].title == ""
    again = write_file("again.tsv.gz", b"")
    write_corpus(docs.values(), again)
    assert read_corpus(again) == docs
    with pytest.raises(InputError, match=r"bad\.tsv:2: field 'columns': expected 2 fields"):
        read_corpus(write_file("bad.tsv", "d1\tok\nd2\ta\tb\tc\n"))
    with pytest.raises(InputError, match=r"dup\.tsv:2: .*duplicate doc id"):
        read_corpus(write_file("dup.tsv", "d1\tx\nd1\ty\n"))


def test_json_corpus_error_names_the_accepted_formats(write_file):
    from rankstack.io import read_corpus

    with pytest.raises(InputError, match=r"corpus\.txt:1: invalid JSON.*accepted corpus formats"
                                         r".*TSV docid<TAB>text"):
        read_corpus(write_file("corpus.txt", "d1\thello\n"))


def test_index_reads_a_tsv_corpus(tmp_path, capsys):
    from rankstack.io import read_run

    (tmp_path / "c.tsv").write_text("d1\tfleas are insects\nd2\tdogs bark\nd3\tcats\tpurr\n")
    (tmp_path / "t.tsv").write_text("q1\twhat are fleas\n")
    assert main(["index", "--corpus", str(tmp_path / "c.tsv"), "--index-dir",
                 str(tmp_path / "ix"), "--stemmer", "none"]) == 0
    assert main(["retrieve", "--index-dir", str(tmp_path / "ix"), "--queries",
                 str(tmp_path / "t.tsv"), "--k", "2", "--out", str(tmp_path / "r.txt")]) == 0
    assert read_run(tmp_path / "r.txt")["q1"].doc_ids[0] == "d1"
    assert os.path.exists(str(tmp_path / "r.txt") + ".config.yaml")


def test_every_result_table_keeps_its_headers_in_a_narrow_terminal():
    from rich.console import Console
    from rich.table import Table

    from rankstack.tables import add_columns

    heads = ("stage", "key", "cached", "seconds", "queries", "pairs", "nDCG@10", "RR(rel=2)@10")
    t = Table()
    add_columns(t, heads, text=("stage", "key"))
    t.add_row("rerank-cross-encoder-minilm", "0123456789abcdef", "no", "12.3", "43", "4300",
              "0.7001", "0.9000")
    console = Console(file=io.StringIO(), width=80)
    console.print(t)
    header = next(ln for ln in console.file.getvalue().splitlines() if "cached" in ln)
    assert all(h in header for h in heads[2:])


def test_rerank_config_beside_the_run_loads_back(data, tmp_path, capsys):
    out = tmp_path / "r.txt"
    assert main(["rerank", "--family", "bm25", "--candidates", "dl19", "--depth", "10",
                 "--set", "k1=1.2", "--out", str(out), "--no-progress"]) == 0
    first = out.read_text()
    out.unlink()
    assert main(["rerank", "--config", str(out) + ".config.yaml"]) == 0
    assert out.read_text() == first
    assert capsys.readouterr().out == ""
