"""Encoder re-ranking: token budgets, batching order, scorers, Reranker policies, families."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rankstack.errors import ConfigError, InputError  # noqa: E402
from rankstack.hf_loading import cpu_has_bf16, resolve_dtype  # noqa: E402
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc  # noqa: E402
from rankstack.rerank.batching import run_batched, sorted_batches  # noqa: E402
from rankstack.rerank.reranker import Reranker  # noqa: E402
from rankstack.rerank.runtime import RuntimeSettings  # noqa: E402
from rankstack.rerank.tokens import Encoded, PairEncoder, SpecialLayout  # noqa: E402

torch.set_num_threads(1)

QUERIES = {"q1": Query("q1", "what do cats eat"), "q2": Query("q2", "capital of France"),
           "q3": Query("q3", "how long do dogs sleep")}
DOCS = {
    "d1": Doc("d1", "cats eat food and fish"),
    "d2": Doc("d2", "Paris is the capital of France", title="France"),
    "d3": Doc("d3", "the river Seine is in Paris"),
    "d4": Doc("d4", "dogs sleep a long time " * 5),
    "d5": Doc("d5", "music"),
}


def make_run() -> Run:
    return Run({
        "q1": Ranking.from_scores("q1", {"d1": 3.0, "d2": 2.0, "d3": 1.0, "d5": 0.5}, "bm25"),
        "q2": Ranking.from_scores("q2", {"d2": 5.0, "d3": 4.0, "d4": 1.0}, "bm25"),
        "q3": Ranking.from_scores("q3", {"d4": 2.0, "d5": 1.0}, "bm25"),
    }, name="bm25")


@pytest.fixture(scope="module")
def tok():
    from tiny_models import minilm_tokenizer

    return minilm_tokenizer()


# ------------------------------------------------------------------ encoding


def test_pair_encoding_matches_tokenizer_without_truncation(tok):
    enc = PairEncoder.from_tokenizer(tok, query_length=32, doc_length=64)
    pairs = [("what do cats eat", "cats eat food"), ("capital of France", "Paris, the city.")]
    out = enc.encode_pairs([q for q, _ in pairs], [d for _, d in pairs])
    for (q, d), e in zip(pairs, out, strict=True):
        ref = tok(q, d)
        assert e.input_ids == ref["input_ids"]
        assert e.token_type_ids == ref["token_type_ids"]
    assert enc.counts.passages == 0 and enc.counts.queries == 0 and enc.counts.encoded == 2


def test_special_layout_learnt_from_fast_backend(tok):
    lay = SpecialLayout.from_tokenizer(tok)
    assert [t for t, _ in lay.pair_prefix] == [tok.cls_token_id]
    assert [t for t, _ in lay.pair_middle] == [tok.sep_token_id]
    assert lay.type_a == 0 and lay.type_b == 1 and lay.n_pair == 3 and lay.n_single == 2


def test_truncation_keeps_query_and_respects_max_length(tok):
    enc = PairEncoder.from_tokenizer(tok, query_length=16, doc_length=10_000, max_length=64)
    q = "what do cats eat"
    q_ids = tok(q, add_special_tokens=False)["input_ids"]
    huge = "cats eat food " * 5000
    (e,) = enc.encode_pairs([q], [huge])
    assert len(e) == 64
    assert e.input_ids[1:1 + len(q_ids)] == q_ids  # query intact right after [CLS]
    assert e.input_ids[1 + len(q_ids)] == tok.sep_token_id
    assert e.input_ids[-1] == tok.sep_token_id
    assert enc.counts.passages == 1 and enc.counts.queries == 0


@pytest.mark.parametrize("budget", [1, 5, 40])
def test_tokenize_precut_equals_full_tokenization(tok, budget):
    enc = PairEncoder.from_tokenizer(tok)
    texts = ["cats eat food " * 400, "x" * 3000, ("supercalifragilistic" * 3 + " ") * 90,
             "Paris, France; the city. " * 200, "short", "=" * 2000, ""]
    ids, cut = enc.tokenize(texts, budget)
    for t, x, c in zip(texts, ids, cut, strict=True):
        full = tok(t, add_special_tokens=False)["input_ids"]
        assert x == full[:budget] and c == (len(full) > budget)


def test_doc_and_query_budgets_count_truncations(tok):
    enc = PairEncoder.from_tokenizer(tok, query_length=3, doc_length=5)
    out = enc.encode_pairs(["one two three four five", "one", "one two three four five"],
                           ["a b c d e f g h", "a b", "a b c"])
    assert [len(e) for e in out] == [3 + 5 + 3, 1 + 2 + 3, 3 + 3 + 3]
    assert enc.counts.queries == 2 and enc.counts.passages == 1
    # the long passage keeps its first 5 tokens, not re-tokenized text
    assert out[0].input_ids[5:10] == tok("a b c d e", add_special_tokens=False)["input_ids"]


def test_single_encoding_prefix_outside_budget(tok):
    enc = PairEncoder.from_tokenizer(tok, query_length=2, doc_length=3)
    (e,) = enc.encode_single(["one two three four"], kind="passages", prefix="passage: ",
                             suffix_ids=[tok.sep_token_id])
    assert tok.convert_ids_to_tokens(e.input_ids) == [
        "[CLS]", "passage", ":", "one", "two", "three", "[SEP]", "[SEP]"]
    assert enc.counts.passages == 1


def test_run_batched_returns_input_order_under_length_sorting():
    rng = np.random.default_rng(0)
    items = [Encoded([int(x) for x in rng.integers(1, 50, size=int(n))])
             for n in rng.integers(1, 40, size=57)]
    seen_widths: list[int] = []

    def forward(b):
        seen_widths.append(b.input_ids.shape[1])
        # padding (0) contributes nothing, so the sum identifies the row
        return (b.input_ids * b.attention_mask).sum(axis=1).astype(np.float32)

    out = run_batched(len(items), lambda a, z: items[a:z], forward, batch_size=4, pad_token_id=0,
                      chunk_size=20)
    assert np.array_equal(out, np.array([sum(x.input_ids) for x in items], dtype=np.float32))
    # within a chunk batches come longest first, with dynamic (not global) padding
    assert seen_widths[0] == max(len(x) for x in items[:20])
    assert min(seen_widths) < max(seen_widths)


def test_run_batched_runs_each_distinct_input_once():
    items = [Encoded([1, 2, 3]), Encoded([4, 5]), Encoded([1, 2, 3]), Encoded([4, 5], [0, 1]),
             Encoded([1, 2, 3])]
    rows: list[list[int]] = []
    covered: list[int] = []

    def forward(b):
        start = len(rows)
        rows.extend(b.input_ids.tolist())
        return np.arange(start, len(rows), dtype=np.float32)

    out = run_batched(len(items), lambda a, z: items[a:z], forward, batch_size=2,
                      pad_token_id=0, progress=covered.append)
    # three distinct inputs (token types count), each run once; copies share one output
    assert len(rows) == 3 and sum(covered) == len(items)
    assert out[0] == out[2] == out[4]
    assert len({float(out[0]), float(out[1]), float(out[3])}) == 3


def test_sorted_batches_left_padding_last_token():
    items = [Encoded([5, 6, 7]), Encoded([8])]
    (b,) = list(sorted_batches(items, 8, pad_token_id=0, padding_side="left"))
    assert b.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert b.input_ids[np.arange(2), b.last_token_positions()].tolist() == [7, 8]
    (r,) = list(sorted_batches(items, 8, pad_token_id=0, padding_side="right"))
    assert r.input_ids[np.arange(2), r.last_token_positions()].tolist() == [7, 8]


def test_runtime_settings_and_dtype():
    import torch as t

    assert resolve_dtype("fp32") == t.float32 and resolve_dtype("bf16") == t.bfloat16
    assert resolve_dtype("auto") == (t.bfloat16 if cpu_has_bf16() else t.float32)
    assert resolve_dtype("fp16") == t.float16
    # one vocabulary: the aliases the HF LLM backend used to take name the same dtypes
    assert RuntimeSettings(dtype="bfloat16").dtype == "bf16"
    assert RuntimeSettings(dtype="float32").dtype == "fp32"
    with pytest.raises(ConfigError, match="dtype must be one of"):
        RuntimeSettings(dtype="int4")
    with pytest.raises(ConfigError):
        RuntimeSettings(threads=-1)


# ------------------------------------------------------------------ cross-encoders


def _reference_scores(model_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Each pair alone (no padding) through the plain HF model: the ground truth."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tk = AutoTokenizer.from_pretrained(model_dir)
    m = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for q, d in pairs:
            logits = m(**tk(q, d, return_tensors="pt")).logits[0]
            out.append(float(logits[0]) if logits.numel() == 1
                       else float(torch.log_softmax(logits, -1)[1]))
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_electra_dir"])
def test_cross_encoder_end_to_end(fixture, request):
    model_dir = request.getfixturevalue(fixture)
    rr = Reranker.from_pretrained(str(model_dir), family="cross-encoder", dtype="fp32",
                                  batch_size=2, show_progress=False)
    assert rr.score_kind == "logit"
    run = make_run()
    out = rr.rerank(run, QUERIES, DOCS, depth=10)
    pairs = [(QUERIES[q].text, DOCS[d].full_text) for q in run for d in run[q].doc_ids]
    ref = _reference_scores(model_dir, pairs)
    got = [out[q].scores()[d] for q in run for d in run[q].doc_ids]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    for q in run:
        assert out[q].scorer == str(model_dir)
        assert set(out[q].doc_ids) == set(run[q].doc_ids)
        assert [d.score for d in out[q]] == sorted((d.score for d in out[q]), reverse=True)
    st = rr.last_stats
    assert st is not None and st.pairs_scored == 9 and st.queries == 3


def test_two_label_cross_encoder_is_log_prob(tmp_path):
    from tiny_models import make_tiny_bert

    d = make_tiny_bert(tmp_path / "mono", num_labels=2)
    rr = Reranker.from_pretrained(str(d), family="cross-encoder", dtype="fp32",
                                  show_progress=False)
    assert rr.score_kind == "log_prob"
    pairs = [("what do cats eat", "cats eat food"), ("capital", "Paris " * 40)]
    s = rr.scorer.score_pairs([q for q, _ in pairs], [p for _, p in pairs])
    assert (s <= 0).all()
    np.testing.assert_allclose(s, _reference_scores(d, pairs), atol=1e-5)


def test_bf16_close_to_fp32(tiny_bert_dir):
    from rankstack.rerank.cross_encoder import CrossEncoderScorer

    q, p = ["what do cats eat"] * 3, ["cats eat food", "music", "Paris is the capital"]
    a = CrossEncoderScorer(str(tiny_bert_dir), dtype="fp32").score_pairs(q, p)
    b = CrossEncoderScorer(str(tiny_bert_dir), dtype="bf16").score_pairs(q, p)
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=0.1)
    mixed = CrossEncoderScorer(str(tiny_bert_dir), dtype="bf16-mixed")
    assert next(mixed.model.parameters()).dtype == torch.float32  # weights stay fp32
    c = mixed.score_pairs(q, p)
    np.testing.assert_allclose(a, c, atol=0.1)
    assert not np.array_equal(a, c)  # autocast really ran in bf16


def test_onnx_backend_matches_torch_and_caches(tiny_bert_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from rankstack.rerank.cross_encoder import CrossEncoderScorer

    q = ["what do cats eat", "capital of France", "dogs"]
    p = ["cats eat food", "Paris is the capital of France " * 3, "music"]
    ref = CrossEncoderScorer(str(tiny_bert_dir), dtype="fp32").score_pairs(q, p)
    s = CrossEncoderScorer(str(tiny_bert_dir), backend="onnx", cache_dir=str(tmp_path),
                           batch_size=2)
    np.testing.assert_allclose(s.score_pairs(q, p), ref, atol=1e-4)
    files = list(tmp_path.rglob("model.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    CrossEncoderScorer(str(tiny_bert_dir), backend="onnx", cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == mtime  # reused, not re-exported
    with pytest.raises(ConfigError, match="fp32"):
        CrossEncoderScorer(str(tiny_bert_dir), backend="onnx", dtype="bf16")


# ------------------------------------------------------------------ bi-encoders


def test_bi_encoder_last_token_padding_invariant(tiny_llama_dir):
    """RepLLaMA-style: last-token pooling with EOS appended, left and right padding."""
    from transformers import AutoModel, AutoTokenizer

    from rankstack.rerank.bi_encoder import BiEncoderScorer

    texts = ["cats eat food", "Paris is the capital of France and a city on the Seine"]
    tk = AutoTokenizer.from_pretrained(tiny_llama_dir)
    m = AutoModel.from_pretrained(tiny_llama_dir).eval()
    ref = []
    with torch.inference_mode():
        for t in texts:
            ids = tk("passage: " + t, add_special_tokens=True)["input_ids"] + [tk.eos_token_id]
            h = m(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            ref.append((h / h.norm()).numpy())
    for side in ("left", "right"):
        s = BiEncoderScorer(str(tiny_llama_dir), pooling="last_token", append_eos=True,
                            query_prefix="query: ", passage_prefix="passage: ",
                            padding_side=side, dtype="fp32", batch_size=2)
        np.testing.assert_allclose(s.encode_passages(texts), np.stack(ref), atol=1e-4)
        assert s.encode_queries(["cats"]).dtype == np.float32


def test_bi_encoder_dot_and_query_dedup(tiny_bert_dir):
    from rankstack.rerank.bi_encoder import BiEncoderScorer

    s = BiEncoderScorer(str(tiny_bert_dir), pooling="cls", similarity="dot", dtype="fp32")
    assert s.score_kind == "dot"
    q = ["cats", "cats", "dogs"]
    p = ["cats eat food", "music", "dogs sleep"]
    calls: list[int] = []
    orig = s.encode_queries
    s.encode_queries = lambda t: (calls.append(len(t)), orig(t))[1]  # type: ignore[method-assign]
    got = s.score_pairs(q, p)
    assert calls == [2]  # one embedding per distinct query
    qe, pe = orig(q), s.encode_passages(p)
    np.testing.assert_allclose(got, (qe * pe).sum(1), rtol=1e-5)


def test_bi_encoder_needs_pooling(tiny_bert_dir):
    from rankstack.rerank.bi_encoder import BiEncoderScorer

    with pytest.raises(ConfigError, match="pooling"):
        BiEncoderScorer(str(tiny_bert_dir))


# ------------------------------------------------------------------ Reranker policies


@pytest.fixture(scope="module")
def ce(tiny_bert_dir):
    return Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                                    show_progress=False)


def test_depth_keeps_tail_in_original_order(ce):
    run = make_run()
    out = ce.rerank(run, QUERIES, DOCS, depth=2)
    for q in run:
        head, tail = run[q].doc_ids[:2], run[q].doc_ids[2:]
        assert set(out[q].doc_ids[:2]) == set(head)
        assert out[q].doc_ids[2:] == tail
        assert max(d.score for d in out[q].docs[2:] or [ScoredDoc("x", -1e9)]) < \
            min(d.score for d in out[q].docs[:2])
    assert ce.last_stats.pairs_scored == 6 and ce.last_stats.kept_below_depth == 3


def test_empty_query_kept_and_counted(ce):
    run = make_run()
    run.rankings["q4"] = Ranking("q4", [], "bm25")
    out = ce.rerank(run, {**QUERIES, "q4": Query("q4", "nothing")}, DOCS)
    assert len(out["q4"]) == 0 and "q4" in out
    assert ce.last_stats.empty_queries == 1


def test_missing_doc_raises_or_skips(tiny_bert_dir):
    run = make_run()
    run.rankings["q1"] = Ranking.from_scores("q1", {"d1": 2.0, "ghost": 1.0}, "bm25")
    rr = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                                  show_progress=False)
    with pytest.raises(InputError, match="ghost.*q1"):
        rr.rerank(run, QUERIES, DOCS)
    rr.on_missing = "skip"
    out = rr.rerank(run, QUERIES, DOCS)
    assert out["q1"].doc_ids == ["d1"]
    assert rr.last_stats.missing_docs == 1


def test_missing_query_text_and_empty_run(ce):
    with pytest.raises(InputError, match="q3"):
        ce.rerank(make_run(), {k: v for k, v in QUERIES.items() if k != "q3"}, DOCS)
    with pytest.raises(InputError, match="no queries"):
        ce.rerank(Run(name="empty"), QUERIES, DOCS)


def test_journal_resumes_interrupted_job(tiny_bert_dir, tmp_path):
    rr = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                                  show_progress=False, chunk_pairs=4)
    full = rr.rerank(make_run(), QUERIES, DOCS)
    journal = tmp_path / "j.jsonl"
    real = rr.scorer.score_pairs
    calls: list[int] = []

    def flaky(q, p):
        calls.append(len(q))
        if len(calls) == 2:
            raise KeyboardInterrupt  # dies after the first group (q1) was journaled
        return real(q, p)

    rr.scorer.score_pairs = flaky  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        rr.rerank_with_stats(make_run(), QUERIES, DOCS, journal=journal)
    calls.clear()
    rr.scorer.score_pairs = lambda q, p: (calls.append(len(q)), real(q, p))[1]  # type: ignore
    out, stats = rr.rerank_with_stats(make_run(), QUERIES, DOCS, journal=journal)
    assert stats.resumed_queries == 1 and sum(calls) == 5  # q2 (3) + q3 (2) only
    assert out.to_dict() == full.to_dict() and list(out) == list(full)
    other = Reranker(rr.scorer, depth=1, show_progress=False)
    with pytest.raises(ConfigError, match="another job"):
        other.rerank_with_stats(make_run(), QUERIES, DOCS, journal=journal)


def test_truncation_counted_in_stats(tiny_bert_dir):
    rr = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                                  doc_length=8, show_progress=False)
    rr.rerank(make_run(), QUERIES, DOCS)
    # only d4 ("dogs sleep a long time" x5) exceeds 8 tokens; it is a candidate of q2 and q3
    assert rr.last_stats.passages_truncated == 2


def test_family_errors_and_config_key(tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        Reranker.from_pretrained(str(tiny_bert_dir), family="nope")
    with pytest.raises(ConfigError, match="--family"):
        Reranker.from_pretrained(str(tiny_bert_dir))
    with pytest.raises(ConfigError, match="does not take setting.*poolin"):
        Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", poolin="mean")
    with pytest.raises(ConfigError, match="does not exist"):
        Reranker.from_pretrained(str(tmp_path / "no-such-model"), family="cross-encoder")
    d = tmp_path / "tagged"
    shutil.copytree(tiny_bert_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["rankstack_family"] = "cross-encoder"
    (d / "config.json").write_text(json.dumps(cfg))
    rr = Reranker.from_pretrained(str(d), dtype="fp32")
    assert rr.scorer.family == "cross-encoder"


def test_rerank_dataset(tiny_bert_dir):
    from rankstack.datasets import Dataset
    from rankstack.rerank import rerank_dataset

    ds = Dataset("toy", dict(QUERIES), dict(DOCS), make_run())
    out = rerank_dataset(ds, model=str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                         depth=1, show_progress=False)
    assert out.n_pairs == ds.run.n_pairs
    with pytest.raises(ConfigError, match="no candidate run"):
        rerank_dataset(Dataset("x", {}), model=str(tiny_bert_dir), family="cross-encoder")


# ------------------------------------------------------------------ real model, real data


@pytest.mark.slow
def test_minilm_bi_encoder_beats_bm25_on_dl19(dl19):
    ir_measures = pytest.importorskip("ir_measures")
    rr = Reranker.from_pretrained(batch_size=64, show_progress=False)  # offline default
    out = rr.rerank(dl19.run, dl19.queries, dl19.docs, depth=100)
    qrels = [ir_measures.Qrel(q, d, g) for q, j in dl19.qrels.items() for d, g in j.items()]
    ndcg = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, out.to_dict())
    value = next(iter(ndcg.values()))
    assert value > 0.5058  # BM25
    assert value == pytest.approx(0.6424, abs=0.01)  # RESOURCES.md (fp32 and bf16 agree)


# ------------------------------------------------------------------ CLI


def test_cli_rerank_from_yaml_writes_run(tiny_bert_dir, tmp_path):
    from rankstack.cli import main
    from rankstack.io import read_run, write_retrieve_results

    cand = tmp_path / "cands.json"
    write_retrieve_results(make_run(), QUERIES, DOCS, cand)
    cfg = tmp_path / "rr.yaml"
    cfg.write_text(f"model: {tiny_bert_dir}\nfamily: cross-encoder\ndtype: fp32\n"
                   f"candidates: {cand}\ndepth: 2\nbatch_size: 2\n")
    out = tmp_path / "run.txt"
    stats = tmp_path / "stats.json"
    rc = main(["rerank", "--config", str(cfg), "--out", str(out), "--stats", str(stats),
               "--no-progress"])
    assert rc == 0
    run = read_run(out)
    assert set(run) == {"q1", "q2", "q3"} and run.n_pairs == 9
    assert json.loads(stats.read_text())["pairs_scored"] == 6
    # no family and no rankstack_family in config.json: a clear error, exit code 2
    assert main(["rerank", "--model", str(tiny_bert_dir), "--candidates", str(cand),
                 "--out", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.txt").exists()
