"""Listwise LLM re-ranking (RankGPT / RankZephyr) over any :class:`LLMBackend`.

Each window's passages go into a versioned prompt template as ``[i] passage`` (truncated
to ``max_passage_tokens`` tokens by the backend's tokenizer, counted as
``passages_truncated``); the model answers ``[3] > [1] > ...``;
:mod:`rankstack.llm.sliding_window` parses and repairs that (policy and counts there) and
slides the window from the bottom of the top-``depth`` list to the top. Calls go through the
on-disk cache when one is given, so a rerun (or a resumed job) re-calls nothing it has done.

Passage preparation is :mod:`rankstack.llm.passages`'s (``passages: tokens`` is the cut above;
``rank_llm`` / ``rankgpt`` prepare each window as those references do, the presets' choice),
with ``id_parsing`` and ``window_policy`` of :mod:`rankstack.llm.sliding_window`.

Output scores are rank-derived (``n - position`` within the re-ranked top), not model scores.
Depth/tail, missing docs and the journal are the protocol's (:mod:`rankstack.rerank.base`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rankstack.errors import ConfigError
from rankstack.llm._run import PassageCutter, llm_budgets, query_groups
from rankstack.llm.accounting import LLMCaller, timer
from rankstack.llm.base import LLMBackend
from rankstack.llm.cache import LLMCache
from rankstack.llm.passages import (
    STYLES,
    PassageStyle,
    answer_token_estimate,
    build_window_prompt,
    prompt_token_counter,
)
from rankstack.llm.sliding_window import (
    IdParsing,
    RepairStats,
    SlidingWindowReranker,
    WindowPolicy,
    extract_ids,
)
from rankstack.llm.templates import PromptTemplate, load_template
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker, rank_scores
from rankstack.rerank.report import RerankReport

log = logging.getLogger("rankstack.llm")


class ListwiseLLMReranker(RunReranker):
    """Sliding-window listwise re-ranking with a text LLM."""

    score_kind = "rank"

    def __init__(self, backend: LLMBackend, template: str | PromptTemplate = "rankzephyr", *,
                 window: int = 20, stride: int = 10, passes: int = 1,
                 max_passage_tokens: int = 100, cache: LLMCache | None = None,
                 depth: int | None = 100, on_missing: OnMissing = "raise",
                 show_progress: bool = True, passages: PassageStyle = "tokens",
                 context_size: int = 4096, id_parsing: IdParsing = "bracketed",
                 window_policy: WindowPolicy = "rank_llm") -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress)
        if passages not in STYLES:
            raise ConfigError(f"passages must be one of {', '.join(STYLES)}, not {passages!r}")
        extract_ids("", id_parsing)  # validates
        #: passage preparation (:mod:`rankstack.llm.passages`), rank_llm's context size for
        #: its word-cap shrinking, and how ids are read from the answer
        self.passages, self.context_size, self.id_parsing = passages, context_size, id_parsing
        SlidingWindowReranker(lambda q, p: [], window=window, stride=stride, policy=window_policy)
        self.window_policy = window_policy
        self.backend = backend
        self.template = template if isinstance(template, PromptTemplate) else load_template(template)
        if self.template.kind != "listwise":
            raise ConfigError(f"template {self.template.id} is {self.template.kind}, not listwise")
        if max_passage_tokens < 1:
            raise ConfigError(f"max_passage_tokens must be >= 1, got {max_passage_tokens}")
        self.window, self.stride, self.passes = window, stride, passes
        SlidingWindowReranker(lambda q, p: [], window=window, stride=stride, passes=passes)
        self.max_passage_tokens = max_passage_tokens
        self.cache = cache

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"llm-listwise:{self.backend.kind}:{self.backend.model_id}:{self.template.id}"

    def journal_identity(self) -> dict[str, Any]:
        return {"model": self.name, "backend": self.backend.cache_identity(),
                "window": self.window, "stride": self.stride, "passes": self.passes,
                "max_passage_tokens": self.max_passage_tokens, "passages": self.passages,
                "context_size": self.context_size, "id_parsing": self.id_parsing,
                "window_policy": self.window_policy}

    def _groups(self, pending: list[RerankItem]) -> Iterator[list[RerankItem]]:
        return query_groups(pending, self.backend)

    def _begin(self, report: RerankReport) -> None:
        self._caller = LLMCaller(self.backend, self.template.id, self.cache)
        self._cutter = PassageCutter(self.backend, self.max_passage_tokens)
        self._repairs: dict[str, RepairStats] = {}
        self._count = prompt_token_counter(self.backend)
        self._shrinks = 0

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        """The group's queries slide their windows in lockstep: each step ranks the current
        window of every query in one batched call (:meth:`SlidingWindowReranker.rerank_many`;
        HF: ``batch_size`` prompts per ``generate``, HTTP: ``max_concurrency`` requests)."""
        caller = self._caller
        tokens = self.passages == "tokens"
        lists: list[tuple[int, list[Any]]] = [
            (k, [self._cutter(d, x) for d, x in zip(it.ids, it.texts, strict=True)]
             if tokens else list(it.docs)) for k, it in enumerate(items)]

        def rank_windows(batch) -> list[list[int]]:
            start = timer()
            # reference preparation is per window (its word cap depends on the window size)
            msgs = [self.template.render_listwise(items[k].query, window) if tokens
                    else self._window_prompt(items[k].query, window) for k, window in batch]
            gens = caller.generate_batch(
                [items[k].qid for k, _ in batch], msgs,
                max_tokens=[self.template.max_tokens(len(window)) for _, window in batch],
                stop=self.template.stop)
            share = (timer() - start) / len(batch)
            for k, _ in batch:
                caller.add_wall(items[k].qid, share)
            return [[i - 1 for i in extract_ids(g.text, self.id_parsing)] for g in gens]

        sw = SlidingWindowReranker(lambda q, p: [], window=self.window, stride=self.stride,
                                   passes=self.passes, policy=self.window_policy)
        results = sw.rerank_many(lists, rank_windows,
                                 on_done=lambda k: advance(len(items[k].ids)))
        out: list[Sequence[float]] = []
        for it, (order, stats) in zip(items, results, strict=True):
            self._repairs[it.qid] = stats
            out.append(rank_scores(order, len(it.ids)))
        report.pairs_scored += sum(len(it.ids) for it in items)
        return out

    def _window_prompt(self, query: str, docs: Sequence[Any]) -> Any:
        answer = answer_token_estimate(self.backend.count_tokens, len(docs))
        w = build_window_prompt(self.template.render_listwise, query, docs, self.passages,
                                count=self._count, context_size=self.context_size,
                                answer_tokens=answer)
        self._shrinks += w.shrinks
        return w.messages

    def _finish(self, report: RerankReport) -> None:
        caller = self._caller
        total_repairs = RepairStats()
        for s in self._repairs.values():
            total_repairs += s
        report.mode = "listwise"
        report.backend = self.backend.describe()
        report.template = self.template.id
        report.settings = {"window": self.window, "stride": self.stride, "passes": self.passes,
                           "depth": report.depth, "max_passage_tokens": self.max_passage_tokens,
                           "queries": report.queries, "passages": self.passages,
                           "context_size": self.context_size, "id_parsing": self.id_parsing,
                           "window_policy": self.window_policy,
                           "word_cap_shrinks": self._shrinks}
        report.per_query = dict(caller.per_query)
        report.total = caller.total()
        report.repairs = total_repairs.to_dict()
        report.repairs_per_query = {q: s.to_dict() for q, s in self._repairs.items()}
        report.passages_truncated = self._cutter.truncated
        report.budgets = llm_budgets(self.max_passage_tokens)
        report.notes = {"tail_docs": report.kept_below_depth,
                        "score_kind": "rank-derived (n - position), not a model score"}

    def close(self) -> None:
        self.backend.close()
        if self.cache is not None:
            self.cache.close()
