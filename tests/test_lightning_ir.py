"""Family lightning-ir: cross-encoders in lightning-ir's saved layout (monoELECTRA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import make_tiny_lightning_ir, minilm_tokenizer  # noqa: E402

from rankstack.errors import ConfigError  # noqa: E402
from rankstack.rerank.registry import scorer_class  # noqa: E402

torch.set_num_threads(1)

Q = ["what do cats eat"] * 3
P = ["cats eat food", "dogs sleep a long time in the sun", "music"]


def manual_scores(path, queries, passages, scoring="rank", pooling="first", q_len=8, d_len=24):
    """lightning-ir MonoModel.forward on the same weights: backbone -> pooler -> linear
    (mono: log-softmax, class 1), inputs cut to query_length / doc_length tokens."""
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    state = load_file(str(path / "model.safetensors"))
    backbone = transformers.ElectraModel(transformers.ElectraConfig(
        **{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
    backbone.load_state_dict({k: v for k, v in state.items() if k != "linear.weight"},
                             strict=False)
    backbone.eval()
    w = state["linear.weight"]
    tok = minilm_tokenizer()
    out = []
    for q, d in zip(queries, passages, strict=True):
        qi = tok(q, add_special_tokens=False).input_ids[:q_len]
        di = tok(d, add_special_tokens=False).input_ids[:d_len]
        ids = [tok.cls_token_id, *qi, tok.sep_token_id, *di, tok.sep_token_id]
        types = [0] * (len(qi) + 2) + [1] * (len(di) + 1)
        with torch.no_grad():
            h = backbone(input_ids=torch.tensor([ids]),
                         token_type_ids=torch.tensor([types])).last_hidden_state[0]
        v = h[0] if pooling == "first" else h.mean(0)
        s = w @ v
        out.append(float(torch.log_softmax(s, -1)[1]) if scoring == "mono" else float(s[0]))
    return np.array(out)


@pytest.mark.parametrize("scoring,pooling", [("rank", "first"), ("mono", "mean")])
def test_lightning_ir_checkpoint_scores_like_its_model(tmp_path, scoring, pooling):
    d = make_tiny_lightning_ir(tmp_path / "m", scoring_strategy=scoring,
                               pooling_strategy=pooling)
    s = scorer_class("lightning-ir")(str(d), dtype="fp32", batch_size=2)
    assert s.score_kind == ("logit" if scoring == "rank" else "log_prob")
    assert (s.encoder.query_length, s.encoder.doc_length) == (8, 24)  # from config.json
    np.testing.assert_allclose(s.score_pairs(Q, P), manual_scores(d, Q, P, scoring, pooling),
                               atol=1e-5)
    long_doc = " ".join(["cats eat food"] * 20)
    assert len(s.encoder.encode_pairs(["q"], [long_doc])[0]) == 1 + 1 + 1 + 24 + 1
    assert s.counts.passages == 1


def test_lightning_ir_bf16_head_and_errors(tmp_path, tiny_bert_dir):
    d = make_tiny_lightning_ir(tmp_path / "m")
    s = scorer_class("lightning-ir")(str(d), dtype="bf16")
    assert s.fp32_head == "classifier" and s.model.classifier.weight.dtype == torch.float32
    np.testing.assert_allclose(s.score_pairs(Q, P), manual_scores(d, Q, P), atol=0.05)
    with pytest.raises(ConfigError, match="not a lightning-ir cross-encoder"):
        scorer_class("lightning-ir")(str(tiny_bert_dir))
    cfg = json.loads((d / "config.json").read_text())
    cfg["scoring_strategy"] = "listwise"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="scoring_strategy"):
        scorer_class("lightning-ir")(str(d))
