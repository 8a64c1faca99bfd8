"""Pointwise LLM re-ranking: relevance = log P("Yes") - log P("No") as the next token.

Works with every backend (HF and GGUF read the full next-token distribution; HTTP servers
must return ``logprobs``/``top_logprobs``). The score is a log-odds ("logit_diff") of the
template's positive vs negative answer; it is comparable only within one model and template.
If a server omits an answer from its top log-probs, that answer gets the smallest returned
log-prob (an upper bound); such pairs are counted as ``answers_missing_from_top_logprobs``.
Candidates below ``depth`` keep their first-stage order under the re-ranked ones, with
scores below every re-ranked score (counted as ``tail_docs``).
"""

from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm

from rankstack.errors import ConfigError
from rankstack.llm._run import map_maybe_parallel, passage_texts, select_queries
from rankstack.llm.accounting import LLMCaller, LLMRunReport, timer
from rankstack.llm.base import LLMBackend
from rankstack.llm.cache import LLMCache
from rankstack.llm.templates import PromptTemplate, load_template
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc


class PointwiseLLMReranker:
    """Score each (query, passage) pair by the yes/no next-token log-odds."""

    score_kind = "logit_diff"

    def __init__(self, backend: LLMBackend, template: str | PromptTemplate = "yesno", *,
                 max_passage_tokens: int = 256, cache: LLMCache | None = None) -> None:
        self.backend = backend
        self.template = template if isinstance(template, PromptTemplate) else load_template(template)
        if self.template.kind != "pointwise":
            raise ConfigError(f"template {self.template.id} is {self.template.kind}, not pointwise")
        if max_passage_tokens < 1:
            raise ConfigError(f"max_passage_tokens must be >= 1, got {max_passage_tokens}")
        self.max_passage_tokens = max_passage_tokens
        self.cache = cache
        self.missing_answers = 0

    @property
    def name(self) -> str:
        return f"llm-pointwise:{self.backend.kind}:{self.backend.model_id}:{self.template.id}"

    def score(self, caller: LLMCaller, qid: str, query: str, passage: str) -> tuple[float, int]:
        """Log-odds score of one pair and how many answers were missing from top log-probs."""
        t = self.template
        msgs = t.render_pointwise(query, self.backend.truncate(passage, self.max_passage_tokens),
                                  chat=self.backend.has_chat_template)
        s = caller.next_token_logprobs(qid, msgs, [t.positive, t.negative])
        return s.logprobs[t.positive] - s.logprobs[t.negative], len(s.missing)

    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc], *,
               depth: int = 100, max_queries: int | None = None,
               progress: bool = True) -> tuple[Run, LLMRunReport]:
        qids = select_queries(run, queries, max_queries, depth)
        caller = LLMCaller(self.backend, self.template.id, self.cache)
        jobs = []
        for q in qids:
            texts = passage_texts(run[q], docs, depth)
            jobs += [(q, d.doc_id, t) for d, t in zip(run[q].docs[:depth], texts, strict=True)]
        t0 = timer()

        def one(job: tuple[str, str, str]) -> tuple[float, int]:
            qid, _, text = job
            start = timer()
            out = self.score(caller, qid, queries[qid].text, text)
            caller.add_wall(qid, timer() - start)
            return out

        with tqdm(total=len(jobs), desc="llm pointwise", unit="pair",
                  disable=not progress) as bar:
            results = map_maybe_parallel(one, jobs, self.backend.max_concurrency, bar.update)
        scores: dict[str, list[ScoredDoc]] = {q: [] for q in qids}
        missing = 0
        for (q, did, _), (s, m) in zip(jobs, results, strict=True):
            scores[q].append(ScoredDoc(did, s))
            missing += m
        out = Run(name=f"llm-pointwise-{self.template.name}")
        tail_total = 0
        for q in qids:
            head = scores[q]
            floor = min((d.score for d in head), default=0.0)
            tail = [ScoredDoc(d.doc_id, floor - 1.0 - i) for i, d in enumerate(run[q].docs[depth:])]
            tail_total += len(tail)
            out.add(Ranking(q, head + tail, self.name))
        report = LLMRunReport(
            mode="pointwise", backend=self.backend.describe(), template=self.template.id,
            settings={"depth": depth, "max_passage_tokens": self.max_passage_tokens,
                      "queries": len(qids), "pairs": len(jobs)},
            per_query=dict(caller.per_query), total=caller.total(), wall_s=timer() - t0,
            notes={"answers_missing_from_top_logprobs": missing, "tail_docs": tail_total,
                   "score_kind": "log P(positive) - log P(negative), next token"})
        return out, report
