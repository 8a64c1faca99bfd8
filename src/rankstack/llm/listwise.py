"""Listwise LLM re-ranking (RankGPT / RankZephyr) over any :class:`LLMBackend`.

Each window's passages go into a versioned prompt template as ``[i] passage`` (truncated
to ``max_passage_tokens`` tokens by the backend's tokenizer); the model answers
``[3] > [1] > ...``; :mod:`rankstack.llm.sliding_window` parses and repairs that (policy
and counts there) and slides the window from the bottom of the top-``depth`` list to the top.

Output scores are rank-derived (``n - position``), not model scores. Candidates below
``depth`` keep their first-stage order under the re-ranked ones (counted as ``tail_docs``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tqdm.auto import tqdm

from rankstack.errors import ConfigError
from rankstack.llm._run import map_maybe_parallel, passage_texts, select_queries
from rankstack.llm.accounting import LLMCaller, LLMRunReport, timer
from rankstack.llm.base import LLMBackend
from rankstack.llm.cache import LLMCache
from rankstack.llm.sliding_window import RepairStats, SlidingWindowReranker, extract_ids
from rankstack.llm.templates import PromptTemplate, load_template
from rankstack.records import Doc, Query, Ranking, Run

log = logging.getLogger("rankstack.llm")


class ListwiseLLMReranker:
    """Sliding-window listwise re-ranking with a text LLM."""

    def __init__(self, backend: LLMBackend, template: str | PromptTemplate = "rankzephyr", *,
                 window: int = 20, stride: int = 10, passes: int = 1,
                 max_passage_tokens: int = 100, cache: LLMCache | None = None) -> None:
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
    def name(self) -> str:
        return f"llm-listwise:{self.backend.kind}:{self.backend.model_id}:{self.template.id}"

    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc], *,
               depth: int = 100, max_queries: int | None = None,
               progress: bool = True) -> tuple[Run, LLMRunReport]:
        """Re-rank the top ``depth`` of each query; returns the new Run and its report."""
        qids = select_queries(run, queries, max_queries, depth)
        caller = LLMCaller(self.backend, self.template.id, self.cache)
        repairs: dict[str, RepairStats] = {}
        truncated: dict[str, str] = {}
        t0 = timer()

        def one(qid: str) -> Ranking:
            start = timer()
            ranking = run[qid]
            head = ranking.docs[:depth]
            texts = passage_texts(ranking, docs, depth)
            passages = []
            for d, text in zip(head, texts, strict=True):
                if d.doc_id not in truncated:
                    truncated[d.doc_id] = self.backend.truncate(text, self.max_passage_tokens)
                passages.append(truncated[d.doc_id])

            def rank_window(query: str, window_passages) -> list[int]:
                msgs = self.template.render_listwise(query, window_passages)
                g = caller.generate(qid, msgs, max_tokens=self.template.max_tokens(
                    len(window_passages)), stop=self.template.stop)
                return [i - 1 for i in extract_ids(g.text)]

            sw = SlidingWindowReranker(rank_window, window=self.window, stride=self.stride,
                                       passes=self.passes)
            order, stats = sw.rerank(queries[qid].text, passages)
            repairs[qid] = stats
            ids = [head[i].doc_id for i in order] + [d.doc_id for d in ranking.docs[depth:]]
            caller.add_wall(qid, timer() - start)
            return Ranking.from_order(qid, ids, self.name)

        with tqdm(total=len(qids), desc="llm listwise", unit="query",
                  disable=not progress) as bar:
            rankings = map_maybe_parallel(one, qids, self.backend.max_concurrency, bar.update)
        out = Run({r.query_id: r for r in rankings}, name=f"llm-listwise-{self.template.name}")
        total_repairs = RepairStats()
        for s in repairs.values():
            total_repairs += s
        tail = sum(max(0, len(run[q]) - depth) for q in qids)
        report = LLMRunReport(
            mode="listwise", backend=self.backend.describe(), template=self.template.id,
            settings={"window": self.window, "stride": self.stride, "passes": self.passes,
                      "depth": depth, "max_passage_tokens": self.max_passage_tokens,
                      "queries": len(qids)},
            per_query=dict(caller.per_query), total=caller.total(), wall_s=timer() - t0,
            repairs=total_repairs.to_dict(),
            repairs_per_query={q: repairs[q].to_dict() for q in qids},
            notes={"tail_docs": tail,
                   "score_kind": "rank-derived (n - position), not a model score"})
        if not total_repairs.clean:
            log.warning("LLM output needed repair in %d of %d windows (see the report)",
                        total_repairs.repaired_windows, total_repairs.windows)
        return out, report
