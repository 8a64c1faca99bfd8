"""A bi-encoder over a GGUF embedding model (e.g. nomic-embed-text-v1.5).

Two backends run the same GGUF weights. ``backend="llama_cpp"``: llama.cpp in embedding mode
(any GGUF embedding architecture). ``backend="torch"``: the NomicBERT architecture written out
in :mod:`rankstack.rerank.nomic_bert` (bf16 where the CPU has it), ~10x faster than the
portable llama.cpp build on these CPUs; a test checks both give the same embeddings. llama.cpp
runs the model in embedding mode (``pooling`` mean by default, as nomic-embed-text
was trained); each text gets its family's task prefix (nomic: ``search_query: `` /
``search_document: ``, the defaults recorded for ``bundled:nomic-embed-text-v1.5`` in
:mod:`rankstack.rerank.defaults`), the pooled vector is L2-normalised and the score is the
cosine (``score_kind "cosine"``; ``similarity="dot"`` skips the normalisation).

Each distinct text is embedded once per scorer: embeddings are kept in memory, so passages
shared by several queries (or re-ranked again) cost nothing. Texts longer than ``max_length``
tokens are truncated by llama.cpp (counted in :attr:`counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from rankstack.errors import ConfigError, require
from rankstack.rerank.base import Scorer

#: llama.cpp pooling type ids (llama_pooling_type)
POOLING_TYPES = {"mean": 1, "cls": 2, "last_token": 3}


class GGUFBiEncoderScorer(Scorer):
    """Bi-encoder re-ranker over a GGUF embedding model (see module doc)."""

    family: ClassVar[str] = "gguf-bi-encoder"
    score_kind: ClassVar[str] = "cosine"

    def __init__(self, model: str, *, query_prefix: str = "", passage_prefix: str = "",
                 pooling: Literal["mean", "cls", "last_token"] = "mean",
                 similarity: Literal["cosine", "dot"] = "cosine", max_length: int = 512,
                 threads: int = 1, batch_size: int = 32,
                 backend: Literal["llama_cpp", "torch"] = "llama_cpp",
                 dtype: str = "auto") -> None:
        from rankstack.hf_loading import check_model_path

        if pooling not in POOLING_TYPES:
            raise ConfigError(f"pooling must be one of {', '.join(POOLING_TYPES)}, "
                              f"not {pooling!r}")
        if similarity not in ("cosine", "dot"):
            raise ConfigError(f"similarity must be cosine or dot, not {similarity!r}")
        for key, value in (("max_length", max_length), ("threads", threads),
                           ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, not {value!r}")
        path = model if not model.startswith("bundled:") else check_model_path(model)
        if not Path(path).is_file() or not path.endswith(".gguf"):
            raise ConfigError(f"gguf-bi-encoder model must be a .gguf file, not {path!r}")
        self.name = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.similarity = similarity
        self.score_kind = similarity  # type: ignore[misc]
        self.max_length = max_length
        self.batch_size = batch_size
        self.backend = backend
        self._cache: dict[str, np.ndarray] = {}
        self.counts = {"embedded": 0, "cache_hits": 0}
        self.llm = None
        if backend == "torch":
            self._init_torch(path, pooling, threads, dtype)
            return
        if backend != "llama_cpp":
            raise ConfigError(f"backend must be llama_cpp or torch, not {backend!r}")
        llama_cpp = require("llama_cpp", "gguf", "GGUF embedding models",
                            package="llama-cpp-python")
        # n_batch = n_ubatch = max_length: a non-causal embedding sequence must fit one ubatch,
        # and truncate=True cuts each text to n_batch tokens.
        self.llm = llama_cpp.Llama(model_path=path, embedding=True,
                                   pooling_type=POOLING_TYPES[pooling], n_ctx=max_length,
                                   n_batch=max_length, n_ubatch=max_length, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.dim = int(self.llm.n_embd())

    def _init_torch(self, path: str, pooling: str, threads: int, dtype: str) -> None:
        import torch

        from rankstack.hf_loading import cpu_has_bf16, load_tokenizer
        from rankstack.rerank.defaults import default_model_path
        from rankstack.rerank.nomic_bert import check_bert_vocab, load_nomic_bert
        from rankstack.rerank.runtime import apply_threads

        if pooling != "mean":
            raise ConfigError("backend torch pools by mean only (as NomicBERT was trained)")
        if dtype not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"dtype must be auto, fp32 or bf16, not {dtype!r}")
        apply_threads(threads)
        use_bf16 = dtype == "bf16" or (dtype == "auto" and cpu_has_bf16())
        self.model, vocab = load_nomic_bert(path, torch.bfloat16 if use_bf16 else None)
        # bert-base-uncased WordPiece: the bundled MiniLM ships the same vocabulary
        self.tokenizer = load_tokenizer(default_model_path())
        check_bert_vocab(vocab, self.tokenizer)
        self.dim = int(self.model.hidden)

    def _embed_torch(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(enc["input_ids"], enc["attention_mask"]).float()
        m = enc["attention_mask"][..., None].float()
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)).numpy()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.backend == "torch":
            return self._embed_torch(texts)
        return np.asarray(self.llm.embed(texts, normalize=False, truncate=True), np.float32)

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        keys = [prefix + t for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        self.counts["cache_hits"] += len(keys) - len(todo)
        todo.sort(key=len)  # similar lengths share a batch: less padding
        for a in range(0, len(todo), self.batch_size):
            chunk = todo[a:a + self.batch_size]
            vecs = self._embed_batch(chunk).astype(np.float32)
            if self.similarity == "cosine":
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            for k, v in zip(chunk, vecs, strict=True):
                self._cache[k] = v
            self.counts["embedded"] += len(chunk)
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[k] for k in keys])

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings ``(n, h)`` float32 (L2-normalised for cosine)."""
        return self._embed(queries, self.query_prefix)

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        """Passage embeddings ``(n, h)`` float32 (L2-normalised for cosine)."""
        return self._embed(passages, self.passage_prefix)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        if not queries:
            return np.zeros(0, np.float32)
        qv = self.encode_queries(queries)
        pv = self.encode_passages(passages)
        return np.einsum("ij,ij->i", qv, pv).astype(np.float32)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
        self._cache.clear()
