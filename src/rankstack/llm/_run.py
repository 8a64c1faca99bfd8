"""Plumbing shared by the listwise and pointwise LLM re-rankers (the input policies are the
protocol's, :mod:`rankstack.rerank.base`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rankstack.llm.base import LLMBackend
from rankstack.rerank.base import RerankItem


def query_groups(pending: list[RerankItem], backend: LLMBackend) -> Iterator[list[RerankItem]]:
    """As many queries per group as the backend runs calls at once, or batches in one
    forward pass (a journal write each)."""
    size = max(1, int(backend.max_concurrency), int(getattr(backend, "batch_size", 1)))
    for i in range(0, len(pending), size):
        yield pending[i:i + size]


class PassageCutter:
    """Passages cut to ``max_tokens`` by the backend's tokenizer, once per doc; counts cuts."""

    def __init__(self, backend: LLMBackend, max_tokens: int) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self._cut: dict[str, str] = {}
        self.truncated = 0

    def __call__(self, doc_id: str, text: str) -> str:
        out = self._cut.get(doc_id)
        if out is None:
            out = self.backend.truncate(text, self.max_tokens)
            if out != text:
                self.truncated += 1
            self._cut[doc_id] = out
        return out


def llm_budgets(max_passage_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"max_passage_tokens": max_passage_tokens, **extra,
            "raise_with": "--set max_passage_tokens=N (settings: {max_passage_tokens: N}); "
                          "a longer prompt may need a larger context (n_ctx)"}
