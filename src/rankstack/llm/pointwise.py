"""Pointwise LLM re-ranking: relevance = log P(positive) - log P(negative) as the next token.

Works with every backend (HF and GGUF read the full next-token distribution; HTTP servers
must return ``logprobs``/``top_logprobs``). The answer token is chosen by the one rule of
:mod:`rankstack.rerank.answer` (the same as the ``yes-no`` scorer family). The score is a
log-odds ("logit_diff") of the template's positive vs negative answer; it is comparable only
within one model and template. If a server omits an answer from its top log-probs, that
answer gets the smallest returned log-prob (an upper bound); such pairs are counted as
``answers_missing_from_top_logprobs``. Depth/tail, missing docs and the journal are the
protocol's (:mod:`rankstack.rerank.base`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rankstack.errors import ConfigError
from rankstack.llm._run import PassageCutter, llm_budgets, query_groups
from rankstack.llm.accounting import LLMCaller, timer
from rankstack.llm.base import LLMBackend
from rankstack.llm.cache import LLMCache
from rankstack.llm.templates import PromptTemplate, load_template
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker, split_scores
from rankstack.rerank.report import RerankReport

#: pairs handed to the backend's batched call at a time (progress and journal granularity)
PAIRS_PER_CALL = 64


class PointwiseLLMReranker(RunReranker):
    """Score each (query, passage) pair by the yes/no next-token log-odds."""

    score_kind = "logit_diff"

    def __init__(self, backend: LLMBackend, template: str | PromptTemplate = "yesno", *,
                 max_passage_tokens: int = 256, cache: LLMCache | None = None,
                 depth: int | None = 100, on_missing: OnMissing = "raise",
                 show_progress: bool = True) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress)
        self.backend = backend
        self.template = template if isinstance(template, PromptTemplate) else load_template(template)
        if self.template.kind != "pointwise":
            raise ConfigError(f"template {self.template.id} is {self.template.kind}, not pointwise")
        if max_passage_tokens < 1:
            raise ConfigError(f"max_passage_tokens must be >= 1, got {max_passage_tokens}")
        self.max_passage_tokens = max_passage_tokens
        self.cache = cache

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"llm-pointwise:{self.backend.kind}:{self.backend.model_id}:{self.template.id}"

    def journal_identity(self) -> dict[str, Any]:
        return {"model": self.name, "backend": self.backend.cache_identity(),
                "max_passage_tokens": self.max_passage_tokens}

    def score(self, caller: LLMCaller, qid: str, query: str, passage: str) -> tuple[float, int]:
        """Log-odds score of one (already cut) pair and how many answers were missing from
        the top log-probs."""
        t = self.template
        msgs = t.render_pointwise(query, passage, chat=self.backend.has_chat_template)
        s = caller.next_token_logprobs(qid, msgs, [t.positive, t.negative])
        return s.logprobs[t.positive] - s.logprobs[t.negative], len(s.missing)

    def _groups(self, pending: list[RerankItem]) -> Iterator[list[RerankItem]]:
        return query_groups(pending, self.backend)

    def _begin(self, report: RerankReport) -> None:
        self._caller = LLMCaller(self.backend, self.template.id, self.cache)
        self._cutter = PassageCutter(self.backend, self.max_passage_tokens)
        self._missing_answers = 0

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        """All pairs of the group through batched calls (HF: ``batch_size`` prompts per
        forward pass; HTTP: ``max_concurrency`` requests at once), :data:`PAIRS_PER_CALL` at
        a time; each score is the single call's."""
        caller = self._caller
        t = self.template
        chat = self.backend.has_chat_template
        jobs = [(it.qid, t.render_pointwise(it.query, self._cutter(d, x), chat=chat))
                for it in items for d, x in zip(it.ids, it.texts, strict=True)]
        results: list[float] = []
        for a in range(0, len(jobs), PAIRS_PER_CALL):
            part = jobs[a:a + PAIRS_PER_CALL]
            start = timer()
            got = caller.next_token_logprobs_batch([q for q, _ in part], [m for _, m in part],
                                                   [t.positive, t.negative])
            share = (timer() - start) / len(part)
            for (qid, _), s in zip(part, got, strict=True):
                caller.add_wall(qid, share)
                results.append(s.logprobs[t.positive] - s.logprobs[t.negative])
                self._missing_answers += len(s.missing)
            advance(len(part))
        report.pairs_scored += len(jobs)
        return split_scores(results, items)

    def _finish(self, report: RerankReport) -> None:
        caller = self._caller
        report.mode = "pointwise"
        report.backend = self.backend.describe()
        report.template = self.template.id
        report.settings = {"depth": report.depth, "max_passage_tokens": self.max_passage_tokens,
                           "queries": report.queries, "pairs": report.pairs_scored}
        report.per_query = dict(caller.per_query)
        report.total = caller.total()
        report.passages_truncated = self._cutter.truncated
        report.budgets = llm_budgets(self.max_passage_tokens)
        report.notes = {"answers_missing_from_top_logprobs": self._missing_answers,
                        "tail_docs": report.kept_below_depth,
                        "score_kind": "log P(positive) - log P(negative), next token"}

    def close(self) -> None:
        self.backend.close()
        if self.cache is not None:
            self.cache.close()
