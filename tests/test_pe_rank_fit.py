"""PE-Rank stages on the one Lightning trainer: both stages for a few steps on a tiny Llama,
exact resume after a kill, the loss decreasing on a fixed toy batch, the YAML task through
``rankstack fit``, and constrained decoding after training (always a permutation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("lightning")

from tiny_models import (  # noqa: E402
    TOY_PASSAGES,  # noqa: E402
    make_tiny_bert,
    make_tiny_llama,
)

from rankstack.errors import ConfigError  # noqa: E402
from rankstack.llm.pe_rank import PassageEmbedder, PERankModel, PERankReranker  # noqa: E402
from rankstack.llm.pe_rank.fit import (  # noqa: E402
    DocItems,
    PERankStage,
    RankingWindows,
    fit_stage,
    split_config,
    training_curve,
)
from rankstack.records import Doc, Ranking, Run  # noqa: E402
from rankstack.train.fit import TrainConfig  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BUDGET = 24
TEXTS = TOY_PASSAGES
DOCS = {f"d{i}": Doc(f"d{i}", t) for i, t in enumerate(TEXTS)}
QUERIES = {"q1": "what do cats eat", "q2": "capital of France", "q3": "dogs sleep"}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("pe-fit")
    return make_tiny_llama(base / "llama"), make_tiny_bert(base / "bert")


def teacher_run() -> Run:
    orders = {"q1": ["d0", "d4", "d7", "d1", "d2", "d5"],
              "q2": ["d1", "d6", "d3", "d0", "d5", "d2"],
              "q3": ["d7", "d4", "d0", "d3", "d6", "d1"]}
    return Run({q: Ranking.from_order(q, ids, "teacher") for q, ids in orders.items()})


def windows(seed: int = 0, n: int = 4) -> RankingWindows:
    from rankstack.train.data import TeacherGroupBuilder

    b = TeacherGroupBuilder(QUERIES, DOCS, teacher_run(), n_docs=n, strategy="top_and_random",
                            seed=seed)
    return RankingWindows(b, DOCS, seed)


def stage(llama, name: str, **kw) -> PERankStage:
    return PERankStage(stage=name, llm=str(llama), max_passage_tokens=BUDGET, **kw)


def cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), max_steps=4, batch_size=2, lr=1e-2, warmup_ratio=0.0,
                weight_decay=0.0, precision="32-true", checkpoint_every=2, log_every=1, seed=0)
    return TrainConfig(**{**base, **kw})


def embedder(bert) -> PassageEmbedder:
    return PassageEmbedder(str(bert), max_length=BUDGET)


def test_windows_shuffle_the_prompt_and_keep_the_teacher_target():
    w = windows()
    ex = w.group(0, epoch=0)
    g = w.builder.group(0, epoch=0)
    ranked = [ex.docs[i].id for i in ex.target]
    teacher = [d for d in teacher_run()[g.query_id].doc_ids if d in g.doc_ids]
    assert ranked == teacher  # the target is the teacher's order of the window's docs
    assert sorted(d.id for d in ex.docs) == sorted(g.doc_ids)
    assert w.group(0, epoch=0).target == ex.target  # a pure function of (seed, epoch, query)


def test_windows_in_first_stage_order():
    from rankstack.train.data import TeacherGroupBuilder

    bm25 = Run({q: Ranking.from_order(q, sorted(DOCS, reverse=True), "bm25") for q in QUERIES})
    b = TeacherGroupBuilder(QUERIES, DOCS, teacher_run(), n_docs=4, seed=0)
    w = RankingWindows(b, DOCS, 0, order="candidates", first_stage=[bm25])
    for i in range(len(w)):
        ex = w.group(i)
        ids = [d.id for d in ex.docs]
        assert ids == sorted(ids, reverse=True)  # shown in the BM25 order
        g = b.group(i)
        assert [ex.docs[k].id for k in ex.target] == [d for d in teacher_run()[g.query_id].doc_ids
                                                       if d in ids]
    with pytest.raises(ConfigError, match="first-stage"):
        RankingWindows(b, DOCS, 0, order="candidates")


def test_alignment_stage_through_the_trainer(dirs, tmp_path):
    llama, bert = dirs
    items = DocItems(list(DOCS.values()))
    res, model = fit_stage(cfg(tmp_path / "s1"), stage(llama, "alignment"), items,
                           embedder=embedder(bert), show_progress=False)
    assert res.steps == 4 and model.config.stages == ["alignment"]
    # checkpoints hold the projector only, not the frozen LLM
    ck = torch.load(tmp_path / "s1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ck["state_dict"] and all(k.startswith("model.projector.") for k in ck["state_dict"])
    # the frozen LLM is unchanged
    fresh = PERankModel.from_pretrained(str(llama), d_emb=32, max_passage_tokens=BUDGET)
    for (k, a), b in zip(fresh.lm.state_dict().items(), model.lm.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    assert len(training_curve(tmp_path / "s1")) == 4
    saved = json.loads((res.model_dir / "rankstack_train.json").read_text())
    assert saved["task"] == "pe-rank" and saved["pe_rank"]["stage"] == "alignment"
    # stage 2 starts from the saved stage-1 model; the re-ranker loads the result
    res2, m2 = fit_stage(cfg(tmp_path / "s2"), stage(llama, "ranking", init=str(res.model_dir)),
                         windows(), embedder=embedder(bert), show_progress=False)
    assert m2.config.stages == ["alignment", "ranking"]
    rr = PERankReranker(str(llama), embedder(bert), projector_path=str(res2.model_dir),
                        window=4, stride=2)
    run = Run({"q1": Ranking.from_order("q1", list(DOCS)[:6], "bm25")})
    out = rr.rerank(run, QUERIES, DOCS)
    assert sorted(out["q1"].doc_ids) == sorted(run["q1"].doc_ids)


def test_ranking_stage_with_lora_saves_a_merged_llm(dirs, tmp_path):
    llama, bert = dirs
    c = cfg(tmp_path / "lora", lora={"r": 4, "lora_dropout": 0.0})
    res, model = fit_stage(c, stage(llama, "ranking"), windows(), embedder=embedder(bert),
                           show_progress=False)
    ck = torch.load(tmp_path / "lora" / "checkpoints" / "last.ckpt", weights_only=False)
    keys = list(ck["state_dict"])
    assert any("lora_A" in k for k in keys) and any(k.startswith("model.projector.") for k in keys)
    assert not any("lora" not in k and "projector" not in k for k in keys)
    assert (res.model_dir / "llm" / "config.json").exists()
    back = PERankModel.from_pretrained(str(res.model_dir / "llm"), res.model_dir, d_emb=32)
    x = embedder(bert).encode_docs(list(DOCS.values()))
    for ex in (windows().group(i) for i in range(3)):
        e = embedder(bert).encode_docs(ex.docs)
        assert back.rank_embeddings(ex.query, e)[0] == model.rank_embeddings(ex.query, e)[0]
    with torch.no_grad():
        assert torch.allclose(back.project(x), model.project(x), atol=1e-6)


def test_ranking_loss_decreases_on_a_fixed_toy_batch(dirs, tmp_path):
    llama, bert = dirs
    from rankstack.llm.pe_rank.fit import train_ranking

    fixed = [windows(n=5).group(i) for i in range(3)]  # epoch-0 windows, the same every step
    model = PERankModel.from_pretrained(str(llama), d_emb=32, max_passage_tokens=BUDGET)
    train_ranking(model, embedder(bert), fixed, out_dir=tmp_path / "toy", max_steps=40,
                  batch_size=3, lr=1e-2, train_llm=True)  # one batch = all three windows
    curve = [r["loss"] for r in training_curve(tmp_path / "toy")]
    assert len(curve) == 40
    assert curve[-1] < 0.5 * curve[0]
    parts = training_curve(tmp_path / "toy")[-1]
    assert {"listmle", "listmle_content", "kl"} <= set(parts)
    # after training, constrained decoding still emits each passage exactly once, no other
    # token, also on windows it was not trained on and on degenerate inputs
    g = torch.Generator().manual_seed(0)
    for n in range(1, 9):
        docs = [DOCS[f"d{(i * 3 + n) % 8}"] for i in range(n)]
        order, counts = model.rank_embeddings("a query", embedder(bert).encode_docs(docs))
        assert sorted(order) == list(range(n)) and counts["generated_tokens"] == n + 1
        proj = torch.randn(n, model.config.d_llm, generator=g) * 10 ** (n % 4)
        order, _ = model.rank_projected("other query", proj)
        assert sorted(order) == list(range(n))
    for ex in fixed:  # the toy windows are being learnt: each window's best passage first
        order = model.rank_embeddings(ex.query, embedder(bert).encode_docs(ex.docs))[0]
        assert order[0] == ex.target[0]


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import lightning as L
    import test_pe_rank_fit as t
    from rankstack.llm.pe_rank.fit import fit_stage

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, *a):
            if trainer.global_step == {kill_at}:
                os._exit(17)

    fit_stage(t.cfg({out!r}, max_steps=6, lora={{"r": 4, "lora_dropout": 0.0}}),
              t.stage({llama!r}, "ranking"), t.windows(), embedder=t.embedder({bert!r}),
              callbacks=[Kill()], show_progress=False)
""")


def _audit(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]


def test_resume_after_kill_matches_an_uninterrupted_run(dirs, tmp_path):
    llama, bert = dirs
    lora = {"r": 4, "lora_dropout": 0.0}
    full, m_full = fit_stage(cfg(tmp_path / "full", max_steps=6, lora=lora),
                             stage(llama, "ranking"), windows(), embedder=embedder(bert),
                             show_progress=False)
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), kill_at=5, out=str(out),
                                llama=str(llama), bert=str(bert))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert (out / "checkpoints" / "step4.ckpt").exists() and not (out / "model").exists()
    resumed, m_res = fit_stage(cfg(out, max_steps=6, lora=lora), stage(llama, "ranking"),
                               windows(), embedder=embedder(bert), show_progress=False)
    assert resumed.resumed_from and resumed.resumed_from.endswith("last.ckpt")
    assert resumed.steps == 6
    full_steps = {s["step"]: s["groups"] for s in _audit(tmp_path / "full")}
    after = [s for s in _audit(out) if s["step"] > 4][-2:]
    assert [s["step"] for s in after] == [5, 6]
    assert [s["groups"] for s in after] == [full_steps[5], full_steps[6]]
    for a, b in zip(m_full.projector.parameters(), m_res.projector.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for (k, a), b in zip(m_full.lm.state_dict().items(), m_res.lm.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_yaml_task_through_rankstack_fit(dirs, tmp_path):
    from rankstack.cli import main
    from rankstack.io import write_run

    llama, bert = dirs
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n"
                              for d in DOCS.values()))
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    teacher = tmp_path / "teacher.txt"
    write_run(teacher_run(), teacher)
    common = {"task": "pe-rank", "max_steps": 2, "batch_size": 2, "precision": "32-true",
              "checkpoint_every": 1, "threads": 1}
    s1 = {**common, "out_dir": str(tmp_path / "s1"),
          "pe_rank": {"stage": "alignment", "llm": str(llama), "embedder": str(bert),
                      "max_passage_tokens": BUDGET},
          "data": {"corpus": [str(corpus)]}}
    s2 = {**common, "out_dir": str(tmp_path / "s2"),
          "pe_rank": {"stage": "ranking", "llm": str(llama), "embedder": str(bert),
                      "max_passage_tokens": BUDGET, "init": str(tmp_path / "s1" / "model")},
          "data": {"teacher_run": str(teacher), "topics": [str(topics)],
                   "corpus": [str(corpus)], "window": 4}}
    import yaml

    for name, c in (("s1.yaml", s1), ("s2.yaml", s2)):
        (tmp_path / name).write_text(yaml.safe_dump(c))
        assert main(["fit", "--config", str(tmp_path / name)]) == 0
    saved = json.loads((tmp_path / "s2" / "model" / "pe_rank_config.json").read_text())
    assert saved["stages"] == ["alignment", "ranking"]

    with pytest.raises(ConfigError, match="loss"):
        split_config({**s1, "loss": "ranknet"})
    with pytest.raises(ConfigError, match="bogus"):
        split_config({**s1, "pe_rank": {**s1["pe_rank"], "bogus": 1}})
    with pytest.raises(ConfigError, match="stage"):
        split_config({**s1, "pe_rank": {**s1["pe_rank"], "stage": "stage3"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**s1, "task": "nope"}))
    assert main(["fit", "--config", str(bad)]) == 2
    # types are checked before any model is loaded, naming the key
    from rankstack.cli.fit import resolve

    bad.write_text(yaml.safe_dump({**s1, "pe_rank": {**s1["pe_rank"], "kl_weight": "high"}}))
    with pytest.raises(ConfigError, match="pe_rank.kl_weight"):
        resolve([str(bad)], [])
    with pytest.raises(ConfigError, match="data.window"):
        resolve([str(tmp_path / "s2.yaml")], ["data.window=many"])
