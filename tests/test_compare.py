"""rankstack compare: quality equals `rankstack evaluate` on the same runs; costs measured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rankstack.cli import main
from rankstack.errors import ConfigError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _ce(path: Path, depth: int = 10) -> str:
    return f"{{model: {path}, family: cross-encoder, depth: {depth}, settings: {{dtype: fp32}}}}"


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_bert_dir, tiny_chat_llama, dl19):
    """compare CLI on 3 DL19 queries: BM25, a tiny cross-encoder, a tiny LLM on 1 query, a
    fusion of the tiny cross-encoder with BM25 over the candidates."""
    out = tmp_path_factory.mktemp("compare")
    argv = ["compare", "--dataset", "dl19", "--max-queries", "3", "--timing-queries", "2",
            "--repeats", "2", "--out-dir", str(out), "--markdown", str(out / "table.md"),
            "--models", "BM25=candidates", f"tiny-ce={_ce(tiny_bert_dir)}",
            f"tiny-llm={{model: {tiny_chat_llama}, family: llm-listwise, backend: hf, depth: 5, "
            f"max_queries: 1, settings: {{window: 5, stride: 5, max_passage_tokens: 16}}}}",
            f"fused={{family: fusion, depth: 10, settings: {{method: rrf}}, members: "
            f"[{{model: {tiny_bert_dir}, family: cross-encoder, settings: {{dtype: fp32}}}}, "
            f"{{family: bm25}}]}}"]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_quality_columns_equal_rankstack_evaluate(compared, capsys):
    data = json.loads((compared / "compare.json").read_text())
    runs = compared / "runs"
    assert main(["evaluate", str(runs / "BM25.run"), str(runs / "tiny-ce.run"),
                 str(runs / "tiny-llm.run"), str(runs / "fused.run"),
                 "--qrels", "dl19", "--measures", "nDCG@10", "--missing", "skip",
                 "--json", str(compared / "evaluate.json")]) == 0
    ev = json.loads((compared / "evaluate.json").read_text())
    got = {r["name"]: r["aggregates"] for r in data["quality"]["runs"]}
    want = {r["name"]: r["aggregates"] for r in ev["runs"]}
    assert got["BM25"] == want["BM25.run"]
    assert got["tiny-ce"] == want["tiny-ce.run"]
    assert got["tiny-llm"] == want["tiny-llm.run"]
    assert got["fused"] == want["fused.run"]
    # the significance tests too (same Evaluator, same runs, same queries)
    key = {"BM25.run": "BM25", "tiny-ce.run": "tiny-ce", "tiny-llm.run": "tiny-llm",
           "fused.run": "fused"}
    gt = {(t["run"], t["test"]): t["p_holm"] for t in data["quality"]["tests"]}
    wt = {(key[t["run"]], t["test"]): t["p_holm"] for t in ev["tests"]}
    assert gt == wt
    counts = {r["name"]: r["counts"]["aggregated"] for r in data["quality"]["runs"]}
    assert counts == {"BM25": 3, "tiny-ce": 3, "tiny-llm": 1, "fused": 3}


@pytest.mark.slow
def test_cost_columns_present_and_positive(compared):
    data = json.loads((compared / "compare.json").read_text())
    costs = data["costs"]
    assert set(costs) == {"tiny-ce", "tiny-llm", "fused"}  # BM25 is the given first stage
    for label, c in costs.items():
        assert c["pairs_per_s"] > 0, label
        assert 0 < c["p50_ms"] <= c["p95_ms"], label
        assert c["load_s"] > 0 and c["quality_s"] > 0, label
        assert c["memory"]["peak_rss_mb"] > c["memory"]["added_rss_mb"] > 0, label
        assert len(c["passes"]) == 2, label
    assert costs["tiny-ce"]["timing_queries"] == 2
    assert costs["tiny-ce"]["pairs_per_query"] == 10
    llm = costs["tiny-llm"]
    assert llm["timing_queries"] == 1 and llm["llm_calls_per_query"] == 1
    assert llm["prompt_tokens_per_query"] > 0 and llm["calls_per_s"] > 0
    assert costs["tiny-ce"]["llm_calls_per_query"] is None
    assert data["ratios"]["tiny-ce"] == {"faster": 1.0, "less_memory": 1.0}  # the reference
    r = data["ratios"]["tiny-llm"]
    assert r["faster"] == pytest.approx(llm["pairs_per_s"] / costs["tiny-ce"]["pairs_per_s"])
    assert "fresh process" in data["method"]["memory"] and "threads=1" in data["method"]["cost"]
    png = (compared / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = (compared / "table.md").read_text()
    assert md.count("\n| ") == 4 and "x faster vs tiny-ce" in md


@pytest.mark.slow
def test_rerun_reuses_the_quality_runs(compared, tiny_bert_dir):
    from rankstack.evaluate.compare import CompareSettings, DatasetArgs, compare, parse_model

    before = (compared / "runs" / "tiny-ce.run").read_text()
    res = compare(DatasetArgs("dl19"), [parse_model("BM25=candidates"),
                                        parse_model(f"tiny-ce={_ce(tiny_bert_dir)}")],
                  compared, CompareSettings(max_queries=3, timing_queries=1, repeats=1,
                                            warmup=0))
    assert res.costs["tiny-ce"].quality_s is None  # re-used, not re-ranked
    assert (compared / "runs" / "tiny-ce.run").read_text() == before
    assert res.costs["tiny-ce"].pairs_per_s > 0


def test_peak_memory_of_a_known_allocation():
    """PeakMemory in a fresh process sees a 256 MiB allocation as ~256 MiB added."""
    code = textwrap.dedent("""
        import json, numpy as np
        from rankstack.evaluate.efficiency import PeakMemory
        m = PeakMemory(); m.start()
        a = np.ones(256 * 2**20 // 8)  # touched: resident
        del a
        print(json.dumps(m.read()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC}, check=True).stdout
    mem = json.loads(out.strip().splitlines()[-1])
    assert mem["added_rss_mb"] == pytest.approx(256, rel=0.05)
    assert mem["peak_rss_mb"] >= mem["base_rss_mb"] + 240


@pytest.mark.slow
def test_model_memory_grows_by_its_weights(tmp_path, tiny_bert_dir, dl19):
    """Two cross-encoders differing by a known parameter count (fp32), 2 pairs per query (so
    activations are small): the added peak RSS grows by their weight bytes. Weights are
    memory-mapped, so RSS counts the pages actually touched: all of the encoder layers but
    only the used rows of the word embeddings (hence the bounds)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import _save, minilm_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    from rankstack.evaluate.compare import CompareSettings, DatasetArgs, compare, parse_model

    def n_params(model, embeddings: bool) -> int:
        return sum(p.numel() for n, p in model.named_parameters()
                   if embeddings or "word_embeddings" not in n)

    tok = minilm_tokenizer()
    big = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=256, num_hidden_layers=6, num_attention_heads=2,
        intermediate_size=4096, max_position_embeddings=512, num_labels=1)).eval()
    small = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    layers = (n_params(big, False) - n_params(small, False)) * 4 / 2**20
    everything = (n_params(big, True) - n_params(small, True)) * 4 / 2**20
    _save(big, tok, tmp_path / "big")
    res = compare(DatasetArgs("dl19"),
                  [parse_model("BM25=candidates"), parse_model(f"small={_ce(tiny_bert_dir, 2)}"),
                   parse_model(f"big={_ce(tmp_path / 'big', 2)}")], tmp_path / "out",
                  CompareSettings(max_queries=1, timing_queries=1, repeats=1, warmup=0))
    grown = res.costs["big"].memory["added_rss_mb"] - res.costs["small"].memory["added_rss_mb"]
    assert layers * 0.9 <= grown <= everything * 1.2 + 10, (grown, layers, everything)
    assert res.ratios("big")["less_memory"] < 1


def test_bad_specs_are_config_errors_before_work(tmp_path, capsys):
    from rankstack.evaluate.compare import parse_model

    with pytest.raises(ConfigError, match="unknown key"):
        parse_model("{model: x, famly: cross-encoder}")
    with pytest.raises(ConfigError, match="depth"):
        parse_model("{model: x, family: cross-encoder, depth: 0}")
    with pytest.raises(ConfigError, match="expected"):
        parse_model("[1, 2]")
    rc = main(["compare", "--dataset", "dl19", "--out-dir", str(tmp_path), "--models",
               "candidates", "{model: x, family: no-such-family}"])
    assert rc == 2
    assert "no-such-family" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_pareto_front():
    from rankstack.evaluate.efficiency import pareto_front

    pts = [(10.0, 0.5), (20.0, 0.6), (15.0, 0.4), (40.0, 0.6), (5.0, 0.3)]
    assert pareto_front(pts) == [4, 0, 1]


def test_candidates_and_qrels_from_files(tmp_path, dl19):
    """--run/--topics/--qrels files instead of a dataset; a candidates-only comparison needs
    no model process and still writes its table, JSON and plot."""
    from rankstack.evaluate import Evaluator
    from rankstack.evaluate.compare import CompareSettings, DatasetArgs, compare, parse_model
    from rankstack.io import write_run
    from rankstack.records import Run

    qids = list(dl19.run)[:4]
    write_run(Run({q: dl19.run[q] for q in qids}, name="bm25"), tmp_path / "bm25.run")
    (tmp_path / "topics.tsv").write_text("".join(f"{q}\t{dl19.queries[q].text}\n"
                                                 for q in qids))
    (tmp_path / "qrels.txt").write_text("".join(
        f"{q} 0 {d} {g}\n" for q in qids for d, g in dl19.qrels.judgments[q].items()))
    data = DatasetArgs("files", run=str(tmp_path / "bm25.run"),
                       topics=str(tmp_path / "topics.tsv"), qrels=str(tmp_path / "qrels.txt"))
    res = compare(data, [parse_model("a=candidates"), parse_model("b=candidates")],
                  tmp_path / "out", CompareSettings(measures=["nDCG@10", "AP"], binary_rel=2))
    want = Evaluator(["nDCG@10", "AP"], dl19.qrels, missing="skip").evaluate(
        Run({q: dl19.run[q] for q in qids}))
    got = res.comparison.result("a").aggregates
    assert got == pytest.approx(want.aggregates)
    assert res.costs == {} and res.reference is None
    res.write_json(tmp_path / "out" / "c.json")
    assert res.plot(tmp_path / "out" / "c.png") == []
    assert "a (baseline)" in res.markdown()
