"""The one trainer for bi-encoder and RankLLaMA students (tiny real models, a few steps)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

sys.path.insert(0, str(Path(__file__).parent))
from test_train_fit import audit, builder, toy_teacher  # noqa: E402
from tiny_models import make_tiny_bert, make_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    from transformers import AutoConfig

    path = make_tiny_bert(tmp_path_factory.mktemp("bert"))
    cfg = AutoConfig.from_pretrained(path)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("llama"))


def cfg_for(out: Path, backbone: Path, **kw):
    from rankstack.train.fit import TrainConfig

    base = dict(out_dir=str(out), backbone=str(backbone), family="bi-encoder", loss="infonce",
                group_size=4, batch_size=2, max_steps=6, lr=1e-3, checkpoint_every=2,
                query_length=8, doc_length=24, precision="32-true", threads=1, seed=3,
                temperature=0.1, warmup_ratio=0.0, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ the loss, by hand


def test_in_batch_infonce_counts_every_passage_of_the_batch_2x2():
    from rankstack.train.bi_encoder import BiEncoderLoss
    from rankstack.train.losses import get_loss

    # two queries, two passages each (positive first, then a hard negative)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[[1.0, 0.0], [0.5, 0.5]],
                      [[0.0, 1.0], [1.0, 1.0]]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss = BiEncoderLoss(get_loss("infonce"), temperature=1.0, in_batch_negatives=True,
                         in_batch_weight=0.0, is_infonce=True)
    got = float(loss(q, d, torch.zeros(2, 2), mask))
    # query 0 scores all 4 passages: 1, 0.5 (own) and 0, 1 (query 1's); positive = 1
    l0 = -math.log(math.e ** 1 / (math.e ** 1 + math.e ** 0.5 + math.e ** 0 + math.e ** 1))
    # query 1: own 1, 1; others 0, 0.5; positive = 1
    l1 = -math.log(math.e ** 1 / (math.e ** 1 + math.e ** 1 + math.e ** 0 + math.e ** 0.5))
    assert got == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # without in-batch negatives only the own group counts
    own = BiEncoderLoss(get_loss("infonce"), temperature=1.0, in_batch_negatives=False,
                        in_batch_weight=0.0, is_infonce=True)
    o0 = -math.log(math.e ** 1 / (math.e ** 1 + math.e ** 0.5))
    o1 = -math.log(0.5)
    assert float(own(q, d, torch.zeros(2, 2), mask)) == pytest.approx((o0 + o1) / 2, rel=1e-6)
    # a padded passage is no negative: query 1's hard negative masked out everywhere
    mask[1, 1] = False
    p0 = -math.log(math.e ** 1 / (math.e ** 1 + math.e ** 0.5 + math.e ** 0))
    p1 = -math.log(math.e ** 1 / (math.e ** 1 + math.e ** 0 + math.e ** 0.5))
    assert float(loss(q, d, torch.zeros(2, 2), mask)) == pytest.approx((p0 + p1) / 2, rel=1e-6)


def test_distillation_loss_plus_weighted_in_batch_term():
    from rankstack.train.bi_encoder import BiEncoderLoss
    from rankstack.train.losses import get_loss

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [1.0, 1.0]]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    targets = torch.tensor([[2.0, 1.0], [2.0, 1.0]])
    kl = get_loss("kl")
    only = BiEncoderLoss(kl, temperature=0.5, in_batch_negatives=True, in_batch_weight=0.0,
                         is_infonce=False)
    own = torch.einsum("bh,bnh->bn", q, d) / 0.5
    assert float(only(q, d, targets, mask)) == pytest.approx(float(kl(own, targets, mask)))
    both = BiEncoderLoss(kl, temperature=0.5, in_batch_negatives=True, in_batch_weight=0.3,
                         is_infonce=False)
    ib = BiEncoderLoss(get_loss("infonce"), temperature=0.5, in_batch_negatives=True,
                       in_batch_weight=0.0, is_infonce=True)
    assert float(both(q, d, targets, mask)) == pytest.approx(
        float(kl(own, targets, mask)) + 0.3 * float(ib(q, d, targets, mask)), rel=1e-6)


# ------------------------------------------------------------------ training, saving, loading


def _embed_loss(model_dir: Path, b) -> float:
    """In-batch InfoNCE of the saved model over all groups, through the re-ranker's encoder."""
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained(str(model_dir), threads=1)
    sc = rr.scorer
    gs = b.groups(0)
    q = torch.from_numpy(sc.encode_queries([g.query for g in gs]))
    d = torch.from_numpy(sc.encode_passages([t for g in gs for t in g.docs])).view(
        len(gs), len(gs[0]), -1)
    from rankstack.train.bi_encoder import BiEncoderLoss
    from rankstack.train.losses import get_loss

    loss = BiEncoderLoss(get_loss("infonce"), temperature=0.1, in_batch_negatives=True,
                         in_batch_weight=0.0, is_infonce=True)
    return float(loss(q, d, torch.zeros(d.shape[:2]), torch.ones(d.shape[:2], dtype=bool)))


def test_bi_encoder_tiny_bert_trains_and_loads_with_no_flags(tmp_path, bert):
    from rankstack.retrieve.dense import load_encoder
    from rankstack.train.fit import fit
    from rankstack.train.modules import build

    b = builder()
    cfg = cfg_for(tmp_path / "run", bert, pooling="cls", max_steps=12)
    # the untrained starting point, saved the way a trained one is
    _, _, save = build(cfg)
    save(tmp_path / "start")
    res = fit(cfg, b, show_progress=False)
    assert res.steps == 12
    conf = json.loads((res.model_dir / "config.json").read_text())
    assert conf["rankstack_family"] == "bi-encoder"
    assert conf["rankstack_bi_encoder"]["similarity"] == "cosine"
    pooling = json.loads((res.model_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] is True
    assert _embed_loss(res.model_dir, b) < _embed_loss(tmp_path / "start", b) - 0.05
    # the dense-index loader takes it with no settings, and agrees with the re-ranker
    enc = load_encoder(str(res.model_dir))
    assert enc.pooling == "cls" and enc.similarity == "cosine"
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained(str(res.model_dir), threads=1)
    v = enc.encode_queries(["what is alpha"])
    w = rr.scorer.encode_queries(["what is alpha"])
    assert v.shape == (1, 32) and abs(float((v * w).sum()) - 1.0) < 1e-5
    metrics = list((res.model_dir.parent / "logs").glob("version_*/metrics.csv"))
    assert metrics and "loss" in metrics[0].read_text().splitlines()[0]


def test_bi_encoder_tiny_llama_last_token_with_eos_and_distillation(tmp_path, llama):
    from rankstack.rerank.reranker import Reranker
    from rankstack.train.fit import fit

    cfg = cfg_for(tmp_path / "run", llama, pooling="last_token", append_eos=True,
                  normalize=False, loss="kl", in_batch_weight=0.5, query_prefix="query: ",
                  passage_prefix="passage: ", max_steps=4, lr=5e-3)
    res = fit(cfg, builder(), show_progress=False)
    assert res.steps == 4 and math.isfinite(res.final_loss)
    rr = Reranker.from_pretrained(str(res.model_dir), threads=1)
    sc = rr.scorer
    assert (sc.pooling, sc.similarity, sc.query_prefix, sc.passage_prefix) == (
        "last_token", "dot", "query: ", "passage: ")
    assert sc.suffix_ids == [sc.tokenizer.eos_token_id]
    s = sc.score_pairs(["what is alpha"] * 2, ["alpha alpha beta", "omega psi"])
    assert s.shape == (2,) and s[0] != s[1]


def test_rankllama_lora_cross_encoder_trains_and_loads_as_rankllama(tmp_path, llama):
    from transformers import AutoModelForSequenceClassification

    from rankstack.rerank.reranker import Reranker
    from rankstack.train.fit import fit

    cfg = cfg_for(tmp_path / "run", llama, family="rankllama", loss="ranknet", max_steps=4,
                  lr=5e-3, lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
                                 "target_modules": ["q_proj", "v_proj"]})
    before = AutoModelForSequenceClassification.from_pretrained(llama, num_labels=1)
    res = fit(cfg, builder(), show_progress=False)
    assert res.steps == 4
    conf = json.loads((res.model_dir / "config.json").read_text())
    assert conf["rankstack_family"] == "rankllama"
    after = AutoModelForSequenceClassification.from_pretrained(res.model_dir)
    # LoRA merged into q/v projections; the untouched MLP weights are unchanged
    sb, sa = before.state_dict(), after.state_dict()
    assert not torch.equal(sb["model.layers.0.self_attn.q_proj.weight"],
                           sa["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(sb["model.layers.0.mlp.up_proj.weight"],
                       sa["model.layers.0.mlp.up_proj.weight"])
    rr = Reranker.from_pretrained(str(res.model_dir), threads=1, dtype="fp32")
    assert rr.scorer.family == "rankllama"
    s = rr.scorer.score_pairs(["what is alpha"] * 2, ["alpha alpha beta", "omega psi"])
    assert s.shape == (2,) and s[0] != s[1]


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import lightning as L
    from test_train_fit import builder
    from test_train_students import cfg_for
    from rankstack.train.fit import fit

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, *a):
            if trainer.global_step == 3:
                os._exit(17)

    fit(cfg_for({out!r}, {backbone!r}), builder(), callbacks=[Kill()], show_progress=False)
""")


def test_bi_encoder_resume_after_kill_matches_an_uninterrupted_run(tmp_path, bert):
    from transformers import AutoModel

    from rankstack.train.fit import fit

    full = fit(cfg_for(tmp_path / "full", bert), builder(), show_progress=False)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(
        tests=str(Path(__file__).parent), out=str(out), backbone=str(bert))],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 17, proc.stderr[-2000:]
    resumed = fit(cfg_for(out, bert), builder(), show_progress=False)
    assert resumed.resumed_from and resumed.steps == 6
    full_steps = {s["step"]: s["groups"] for s in audit(tmp_path / "full")}
    after = [s for s in audit(out) if s["step"] > 2][-4:]
    assert [s["step"] for s in after] == [3, 4, 5, 6]
    assert [s["groups"] for s in after][1:] == [full_steps[4], full_steps[5], full_steps[6]]
    a = AutoModel.from_pretrained(full.model_dir).state_dict()
    b = AutoModel.from_pretrained(resumed.model_dir).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_fit_progress_counts_steps_and_prints_no_lightning_tips(tmp_path, bert, capfd):
    from rankstack.train.fit import fit

    fit(cfg_for(tmp_path / "run", bert, max_steps=3), builder(), show_progress=True)
    err = capfd.readouterr()
    text = err.out + err.err
    assert "train (step 3/3)" in text
    assert "/-2" not in text and "Epoch 0" not in text
    assert "litlogger" not in text and "litmodels" not in text


def test_bi_encoder_ddp_two_processes(tmp_path, bert):
    import os

    from rankstack.io import write_corpus, write_run, write_topics

    queries, docs, teacher = toy_teacher()
    write_topics(queries, tmp_path / "topics.tsv")
    write_corpus(docs.values(), tmp_path / "corpus.jsonl")
    write_run(teacher, tmp_path / "teacher.txt")
    cfg = tmp_path / "train.yaml"
    cfg.write_text(textwrap.dedent(f"""
        out_dir: {tmp_path / 'out'}
        family: bi-encoder
        backbone: {bert}
        loss: infonce
        temperature: 0.1
        group_size: 4
        batch_size: 2
        max_steps: 3
        checkpoint_every: 3
        query_length: 8
        doc_length: 24
        precision: 32-true
        threads: 1
        data:
          teacher_run: {tmp_path / 'teacher.txt'}
          topics: [{tmp_path / 'topics.tsv'}]
          corpus: [{tmp_path / 'corpus.jsonl'}]
          strategy: top
        """))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_PORT": str(29700 + os.getpid() % 1000)}
    proc = subprocess.run([sys.executable, "-m", "rankstack.cli", "fit", "--config", str(cfg),
                           "--devices", "2", "--strategy", "ddp"],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model = tmp_path / "out" / "model"
    assert json.loads((model / "config.json").read_text())["rankstack_family"] == "bi-encoder"
    steps = audit(tmp_path / "out")
    assert [s["step"] for s in steps] == [1, 2, 3]
