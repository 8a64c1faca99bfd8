"""The one HF loading / dtype path (rankstack.hf_loading) and fp32 scoring heads (issue 15.3)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rankstack.errors import ConfigError  # noqa: E402
from rankstack.hf_loading import (  # noqa: E402
    DTYPES,
    concrete_dtype,
    load_model,
    normalize_dtype,
    resolve_dtype,
)

torch.set_num_threads(1)

WORDS = ["cats", "dogs", "food", "eat", "sleep", "Paris", "France", "river", "music", "rain",
         "python", "code", "city", "long", "very", "one", "two", "three", "sun", "piano"]

def _pairs(n: int = 48) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(1)
    qs = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    ps = [" ".join(rng.choice(WORDS, int(rng.integers(4, 12)))) for _ in range(n)]
    return qs, ps

def _on_bf16_grid(x: np.ndarray) -> np.ndarray:
    """Whether each float32 value is exactly representable in bfloat16."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return (t.bfloat16().float() == t).numpy()

def test_one_dtype_vocabulary_with_aliases():
    assert DTYPES == ("auto", "fp32", "bf16", "fp16", "bf16-mixed")
    for alias, name in [("float32", "fp32"), ("torch.bfloat16", "bf16"), ("half", "fp16"),
                        ("BF16", "bf16"), ("bf16-mixed", "bf16-mixed"), (None, "auto")]:
        assert normalize_dtype(alias) == name
    assert resolve_dtype("fp16") == torch.float16
    assert resolve_dtype("bf16-mixed") == torch.float32  # weights stay fp32 under autocast
    assert concrete_dtype("auto", "cpu") in ("fp32", "bf16")
    with pytest.raises(ConfigError, match="dtype must be one of auto, fp32, bf16, fp16"):
        normalize_dtype("float64")

def test_load_model_names_dtype_and_errors(tiny_bert_dir, tmp_path):
    m = load_model("AutoModelForSequenceClassification", str(tiny_bert_dir), dtype="bfloat16")
    assert next(m.parameters()).dtype == torch.bfloat16 and not m.training
    with pytest.raises(ConfigError, match="does not exist"):
        load_model("AutoModel", str(tmp_path / "missing/"))
    with pytest.raises(ConfigError, match="no class"):
        load_model("AutoModelForNothing", str(tiny_bert_dir))

def test_loading_draws_no_weights_bar_and_keeps_the_users_setting(tiny_bert_dir, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model("AutoModel", str(tiny_bert_dir))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored
    hf_logging.disable_progress_bar()
    try:
        load_model("AutoModel", str(tiny_bert_dir))
        assert not hf_logging.is_progress_bar_enabled()  # a user's own choice stands
    finally:
        hf_logging.enable_progress_bar()


def test_bf16_cross_encoder_scores_are_not_quantised(tiny_bert_dir):
    from rankstack.rerank.cross_encoder import CrossEncoderScorer

    q, p = _pairs()
    fp32 = CrossEncoderScorer(str(tiny_bert_dir), dtype="fp32").score_pairs(q, p)
    s = CrossEncoderScorer(str(tiny_bert_dir), dtype="bf16")
    assert s.fp32_head == "classifier"
    assert s.model.classifier.weight.dtype == torch.float32
    assert next(s.model.bert.parameters()).dtype == torch.bfloat16  # the body stays bf16
    bf16 = s.score_pairs(q, p)
    # distinct pairs get distinct scores, off the bf16 grid, close to fp32
    assert len(set(bf16.tolist())) == len(set(fp32.tolist()))
    assert _on_bf16_grid(bf16).mean() < 0.25
    assert np.corrcoef(bf16, fp32)[0, 1] > 0.95
    # without the fp32 head the same scores collapse onto the bf16 grid (what issue 15.3 saw)
    old = CrossEncoderScorer(str(tiny_bert_dir), dtype="bf16", fp32_head=False).score_pairs(q, p)
    assert _on_bf16_grid(old).all()

def test_bf16_prompted_scorers_read_fp32_rows(tiny_t5_dir, tiny_llama_cls_dir, tiny_llama_dir):
    from rankstack.rerank.decoder import RankLlamaScorer, YesNoScorer
    from rankstack.rerank.t5 import MonoT5Scorer, RankT5Scorer

    q, p = _pairs(24)
    for cls, d in [(MonoT5Scorer, tiny_t5_dir), (RankT5Scorer, tiny_t5_dir),
                   (RankLlamaScorer, tiny_llama_cls_dir), (YesNoScorer, tiny_llama_dir)]:
        ref = cls.from_pretrained(str(d), dtype="fp32").score_pairs(q, p)
        s = cls.from_pretrained(str(d), dtype="bf16")
        out = s.score_pairs(q, p)
        assert _on_bf16_grid(out).mean() < 0.5, cls.family
        assert len(set(out.tolist())) == len(set(ref.tolist())), cls.family
        assert np.abs(out - ref).max() < 0.1 * (np.abs(ref).max() + 1e-3) + 0.05, cls.family
