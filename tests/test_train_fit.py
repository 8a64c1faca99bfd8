"""The Lightning trainer: a tiny student trains, saves an HF model, resumes after a kill."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from rankstack.records import Doc, Query, Run  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"]


def toy_teacher(n_queries: int = 12, n_docs: int = 10):
    """Queries share a word with their top docs; the teacher ranks by word overlap."""
    queries, docs, scores = {}, {}, {}
    for q in range(n_queries):
        qw = WORDS[q % len(WORDS)]
        queries[f"q{q}"] = Query(f"q{q}", f"what is {qw}")
        scores[f"q{q}"] = {}
        for d in range(n_docs):
            did = f"q{q}d{d}"
            text = " ".join([qw] * max(0, 5 - d) + WORDS[d:d + 6])
            docs[did] = Doc(did, text)
            scores[f"q{q}"][did] = float(n_docs - d)
    return queries, docs, Run.from_dict(scores, name="toy-teacher", scorer="toy")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """Tiny BERT without dropout, so training is deterministic and resume is bit-comparable."""
    from tiny_models import make_tiny_bert
    from transformers import AutoConfig

    path = make_tiny_bert(tmp_path_factory.mktemp("tiny_student"))
    cfg = AutoConfig.from_pretrained(path)
    cfg.hidden_dropout_prob = 0.0
    cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(path)
    return path


def make_cfg(out: Path, backbone: Path, **kw):
    from rankstack.train.fit import TrainConfig

    base = dict(out_dir=str(out), backbone=str(backbone), loss="ranknet", group_size=4,
                batch_size=2, max_steps=6, lr=1e-3, checkpoint_every=2, query_length=8,
                doc_length=24, precision="32-true", threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def builder(n_docs: int = 4):
    from rankstack.train.data import TeacherGroupBuilder

    queries, docs, teacher = toy_teacher()
    return TeacherGroupBuilder(queries, docs, teacher, n_docs=n_docs, strategy="top_and_random",
                               seed=1)


def audit(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]


def test_fit_trains_lowers_the_loss_and_saves_a_loadable_model(tmp_path, backbone):
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rankstack.rerank.batching import pad_batch
    from rankstack.rerank.tokens import PairEncoder
    from rankstack.train.data import collate_groups
    from rankstack.train.fit import fit
    from rankstack.train.losses import get_loss

    b = builder()
    res = fit(make_cfg(tmp_path / "run", backbone, max_steps=20, checkpoint_every=10,
                       warmup_ratio=0.0), b, show_progress=False)
    assert res.steps == 20
    steps = audit(tmp_path / "run")
    assert [s["step"] for s in steps] == list(range(1, 21))
    # 12 groups / batch 2 = 6 batches an epoch: steps 1-6 visit each query once
    first_epoch = [q for s in steps[:6] for q in s["groups"]]
    assert sorted(first_epoch) == sorted(f"q{i}" for i in range(12))
    cfg = json.loads((res.model_dir / "config.json").read_text())
    assert cfg["rankstack_family"] == "cross-encoder"
    resolved = json.loads((res.model_dir / "rankstack_train.json").read_text())
    assert resolved["loss"] == "ranknet" and resolved["steps_done"] == 20
    ckpts = {p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt")}
    assert {"last.ckpt", "step10.ckpt", "step20.ckpt"} <= ckpts

    def loss_of(path) -> float:
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        assert model.config.num_labels == 1
        tok = AutoTokenizer.from_pretrained(path)
        enc = PairEncoder(tok, query_length=8, doc_length=24)
        gb = collate_groups(b.groups(0))
        qs, ds = gb.flat_pairs()
        inputs = pad_batch(enc.encode_pairs(qs, ds), np.arange(len(qs)), tok.pad_token_id).torch()
        with torch.inference_mode():
            flat = model(**inputs).logits.view(-1)
        return float(get_loss("ranknet")(gb.unflatten(flat), gb.targets, gb.mask))

    assert loss_of(res.model_dir) < loss_of(backbone) - 0.05

    # rankstack loads the student by its recorded family and scores it with the training budgets
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained(str(res.model_dir), threads=1)
    assert rr.scorer.family == "cross-encoder"
    assert (rr.scorer.encoder.query_length, rr.scorer.encoder.doc_length) == (8, 24)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import lightning as L
    from test_train_fit import builder, make_cfg
    from rankstack.train.fit import fit

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, *a):
            if trainer.global_step == {kill_at}:
                os._exit(17)  # a hard kill: no cleanup, no final save

    fit(make_cfg({out!r}, {backbone!r}), builder(), callbacks=[Kill()], show_progress=False)
""")


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, backbone):
    from rankstack.train.fit import fit

    full = fit(make_cfg(tmp_path / "full", backbone), builder(), show_progress=False)

    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), kill_at=5, out=str(out),
                                backbone=str(backbone))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert (out / "checkpoints" / "step4.ckpt").exists()
    assert not (out / "model").exists()

    resumed = fit(make_cfg(out, backbone), builder(), show_progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("last.ckpt")
    assert resumed.steps == 6  # the same total number of optimizer steps
    # Steps 5-6 after resuming consumed exactly the batches of the uninterrupted run.
    full_steps = {s["step"]: s["groups"] for s in audit(tmp_path / "full")}
    killed_steps = audit(out)
    after = [s for s in killed_steps if s["step"] > 4][-2:]
    assert [s["step"] for s in after] == [5, 6]
    assert [s["groups"] for s in after] == [full_steps[5], full_steps[6]]
    # No group of steps 1-4 was replayed after the resume.
    replayed = [s for s in killed_steps[5:] if s["step"] <= 4]
    assert replayed == []
    # Deterministic model: the resumed run ends with the same weights.
    from transformers import AutoModelForSequenceClassification

    a = AutoModelForSequenceClassification.from_pretrained(full.model_dir).state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(resumed.model_dir).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

