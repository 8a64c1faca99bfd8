"""Bi-encoder re-ranking: embed query and passage separately, score by cosine or dot product.

Pooling of the encoder's last hidden states: ``cls`` (first token), ``mean`` (over real
tokens) or ``last_token`` (last non-pad token, for left or right padding: RepLLaMA-style
decoders). Optional text prefixes (``query_prefix`` / ``passage_prefix``, e.g. RepLLaMA's
``"query: "`` / ``"passage: "`` or E5's) and ``append_eos`` (append the tokenizer's EOS id
after the text). With ``pooling=None`` the pooling is read from a sentence-transformers
``1_Pooling/config.json`` in the model directory; without one it is a ConfigError.

Score semantics: ``similarity="cosine"`` -> cosine in [-1, 1] (``score_kind "cosine"``);
``"dot"`` -> inner product of the pooled vectors (``"dot"``).

:meth:`BiEncoderScorer.encode_queries` / :meth:`BiEncoderScorer.encode_passages` return
float32 arrays (L2-normalized when ``similarity="cosine"``, so inner product = score) for
dense retrieval to reuse. In :meth:`score_pairs` each distinct query and passage text is
embedded once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from rankstack.errors import ConfigError
from rankstack.hf_loading import model_file
from rankstack.rerank.batching import Batch
from rankstack.rerank.cross_encoder import TransformerScorer

Pooling = Literal["cls", "mean", "last_token"]
Similarity = Literal["cosine", "dot"]

#: RepLLaMA's text templates (Ma et al. 2023), used with last_token pooling and append_eos.
REPLLAMA_QUERY_PREFIX = "query: "
REPLLAMA_PASSAGE_PREFIX = "passage: "


def pool(hidden: np.ndarray, batch: Batch, how: Pooling) -> np.ndarray:
    """Pool ``(b, s, h)`` hidden states over each row's real tokens -> ``(b, h)`` float32."""
    if how == "cls":
        if batch.padding_side == "left":
            first = batch.input_ids.shape[1] - batch.attention_mask.sum(axis=1)
            return hidden[np.arange(len(hidden)), first].astype(np.float32)
        return hidden[:, 0].astype(np.float32)
    if how == "mean":
        m = batch.attention_mask[..., None].astype(np.float32)
        return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    if how == "last_token":
        return hidden[np.arange(len(hidden)), batch.last_token_positions()].astype(np.float32)
    raise ConfigError(f"pooling must be cls, mean or last_token, not {how!r}")


def _st_pooling(model: str) -> Pooling | None:
    """Pooling named by a sentence-transformers ``1_Pooling/config.json``, if any."""
    cfg = model_file(model, "1_Pooling/config.json")
    if cfg is None:
        return None
    d = json.loads(cfg.read_text(encoding="utf-8"))
    if d.get("pooling_mode_mean_tokens"):
        return "mean"
    if d.get("pooling_mode_cls_token"):
        return "cls"
    if d.get("pooling_mode_lasttoken"):
        return "last_token"
    return None


def _saved_settings(model: str) -> dict[str, Any]:
    """Scoring settings a rankstack-trained bi-encoder recorded in its config.json."""
    cfg = model_file(model, "config.json")
    if cfg is None:
        return {}
    value = json.loads(cfg.read_text(encoding="utf-8")).get("rankstack_bi_encoder") or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg}: rankstack_bi_encoder must be a mapping")
    return value


def st_max_length(model: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers ``sentence_bert_config.json`` (the length
    the model was trained and is used at: 256 for all-MiniLM-L6-v2), for ``bundled:`` ids,
    local directories and hub names alike; None when the model has no such file."""
    cfg = model_file(model, "sentence_bert_config.json")
    if cfg is None:
        return None
    v = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
    return int(v) if v else None


class BiEncoderScorer(TransformerScorer):
    """Bi-encoder re-ranker over ``AutoModel`` hidden states (see module doc)."""

    family: ClassVar[str] = "bi-encoder"
    score_kind: ClassVar[str] = "cosine"
    auto_class: ClassVar[str] = "AutoModel"
    onnx_output: ClassVar[str] = "last_hidden_state"

    def __init__(self, model: str, *, pooling: Pooling | None = None,
                 similarity: Similarity | None = None, query_prefix: str | None = None,
                 passage_prefix: str | None = None, append_eos: bool | None = None,
                 query_length: int | None = None, doc_length: int | None = None,
                 max_length: int | None = None,
                 **settings: Any) -> None:
        # A model trained by rankstack records its scoring settings; explicit ones win.
        saved = _saved_settings(model)
        similarity = similarity or saved.get("similarity", "cosine")
        query_prefix = saved.get("query_prefix", "") if query_prefix is None else query_prefix
        passage_prefix = (saved.get("passage_prefix", "") if passage_prefix is None
                          else passage_prefix)
        append_eos = saved.get("append_eos", False) if append_eos is None else append_eos
        query_length = query_length or saved.get("query_length")
        doc_length = doc_length or saved.get("doc_length")
        if similarity not in ("cosine", "dot"):
            raise ConfigError(f"similarity must be cosine or dot, not {similarity!r}")
        if pooling is None:
            pooling = _st_pooling(model)
            if pooling is None:
                raise ConfigError(f"{model}: give pooling (cls, mean or last_token); the model "
                                  f"directory names none (no 1_Pooling/config.json)")
        if pooling not in ("cls", "mean", "last_token"):
            raise ConfigError(f"pooling must be cls, mean or last_token, not {pooling!r}")
        if max_length is None:
            max_length = st_max_length(model)
        # A bi-encoder encodes each side alone: each may use the whole length by default.
        super().__init__(model, query_length=query_length or 512,
                         doc_length=doc_length or 512, max_length=max_length, **settings)
        self.pooling: Pooling = pooling
        self.similarity: Similarity = similarity
        self.score_kind = similarity  # type: ignore[misc]
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.suffix_ids: list[int] = []
        if append_eos:
            eos = self.tokenizer.eos_token_id
            if eos is None:
                raise ConfigError(f"{model}: append_eos=True but the tokenizer has no EOS token")
            self.suffix_ids = [int(eos)]

    def _encode(self, texts: Sequence[str], kind: Literal["queries", "passages"]) -> np.ndarray:
        texts = list(texts)
        prefix = self.query_prefix if kind == "queries" else self.passage_prefix

        def enc(a: int, b: int):
            return self.encoder.encode_single(texts[a:b], kind=kind, prefix=prefix,
                                              suffix_ids=self.suffix_ids)

        def post(hidden: np.ndarray, batch: Batch) -> np.ndarray:
            v = pool(hidden, batch, self.pooling)
            if self.similarity == "cosine":
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            return v

        out = self._run(len(texts), enc, post)
        return out if len(texts) else np.zeros((0, self.config.hidden_size), np.float32)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings ``(n, h)`` float32 (L2-normalized for cosine)."""
        return self._encode(queries, "queries")

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        """Passage embeddings ``(n, h)`` float32 (L2-normalized for cosine)."""
        return self._encode(passages, "passages")

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        if not queries:
            return np.zeros(0, np.float32)
        uq = list(dict.fromkeys(queries))
        up = list(dict.fromkeys(passages))
        qe = self.encode_queries(uq)
        pe = self.encode_passages(up)
        qi = {t: i for i, t in enumerate(uq)}
        pi = {t: i for i, t in enumerate(up)}
        qv = qe[[qi[t] for t in queries]]
        pv = pe[[pi[t] for t in passages]]
        return np.einsum("ij,ij->i", qv, pv).astype(np.float32)
