"""Efficiency accounting of LLM runs and the cached, counted call path every re-ranker uses.

:class:`LLMCaller` wraps a backend with the cache and counts, per query and in total:
model calls, cache hits, prompt and generated tokens of the calls actually made (tokens
of cache hits are kept apart as ``cached_*``), and wall time. :class:`~rankstack.rerank.report.RerankReport`
(the one re-ranking report; ``LLMRunReport`` is its former name) carries the usage, the
listwise repair counts, prints a rich table and is saved as JSON next to the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rankstack.llm.base import Generation, LLMBackend, NextTokenScores, Prompt
from rankstack.llm.cache import LLMCache, cache_key
from rankstack.rerank.report import RerankReport, Usage


class LLMCaller:
    """Backend + optional cache + usage counters for one run (thread-safe)."""

    def __init__(self, backend: LLMBackend, template_id: str, cache: LLMCache | None = None):
        self.backend = backend
        self.template_id = template_id
        self.cache = cache
        self.per_query: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def _usage(self, qid: str) -> Usage:
        with self._lock:
            return self.per_query.setdefault(qid, Usage())

    def _record(self, qid: str, hit: bool, prompt_tokens: int, completion_tokens: int) -> None:
        u = self._usage(qid)
        with self._lock:
            if hit:
                u.cache_hits += 1
                u.cached_prompt_tokens += prompt_tokens
                u.cached_completion_tokens += completion_tokens
            else:
                u.calls += 1
                u.prompt_tokens += prompt_tokens
                u.completion_tokens += completion_tokens

    def add_wall(self, qid: str, seconds: float) -> None:
        u = self._usage(qid)
        with self._lock:
            u.wall_s += seconds

    def _key(self, kind: str, payload: Any) -> str:
        return cache_key(self.backend.cache_identity(), self.template_id, kind, payload)

    def generate(self, qid: str, prompt: Prompt, *, max_tokens: int,
                 stop: Sequence[str] | None = None) -> Generation:
        key = None
        if self.cache is not None:
            key = self._key("generate", {"prompt": prompt, "max_tokens": max_tokens,
                                         "stop": list(stop or []), "temperature": 0})
            hit = self.cache.get(key)
            if hit is not None:
                g = Generation(**hit)
                self._record(qid, True, g.prompt_tokens, g.completion_tokens)
                return g
        g = self.backend.generate(prompt, max_tokens=max_tokens, stop=stop)
        if self.cache is not None and key is not None:
            self.cache.put(key, asdict(g), model=self.backend.model_id,
                           template=self.template_id, kind="generate")
        self._record(qid, False, g.prompt_tokens, g.completion_tokens)
        return g

    def generate_batch(self, qids: Sequence[str], prompts: Sequence[Prompt], *,
                       max_tokens: Sequence[int], stop: Sequence[str] | None = None
                       ) -> list[Generation]:
        """:meth:`generate` of many prompts (``qids[i]`` is charged for ``prompts[i]``): cache
        hits are answered from the cache, the rest go to the backend in one
        :meth:`~rankstack.llm.base.LLMBackend.generate_batch` call."""
        out: list[Generation | None] = [None] * len(prompts)
        keys: list[str | None] = [None] * len(prompts)
        for i, prompt in enumerate(prompts):
            if self.cache is not None:
                keys[i] = self._key("generate", {"prompt": prompt, "max_tokens": max_tokens[i],
                                                 "stop": list(stop or []), "temperature": 0})
                hit = self.cache.get(keys[i])
                if hit is not None:
                    out[i] = Generation(**hit)
                    self._record(qids[i], True, out[i].prompt_tokens, out[i].completion_tokens)
        todo = [i for i, g in enumerate(out) if g is None]
        if todo:
            gens = self.backend.generate_batch([prompts[i] for i in todo],
                                               max_tokens=[max_tokens[i] for i in todo], stop=stop)
            for i, g in zip(todo, gens, strict=True):
                out[i] = g
                if self.cache is not None and keys[i] is not None:
                    self.cache.put(keys[i], asdict(g), model=self.backend.model_id,
                                   template=self.template_id, kind="generate")
                self._record(qids[i], False, g.prompt_tokens, g.completion_tokens)
        return out  # type: ignore[return-value]

    def next_token_logprobs_batch(self, qids: Sequence[str], prompts: Sequence[Prompt],
                                  candidates: Sequence[str]) -> list[NextTokenScores]:
        """:meth:`next_token_logprobs` of many prompts, batched like :meth:`generate_batch`."""
        out: list[NextTokenScores | None] = [None] * len(prompts)
        keys: list[str | None] = [None] * len(prompts)
        for i, prompt in enumerate(prompts):
            if self.cache is not None:
                keys[i] = self._key("logprobs", {"prompt": prompt, "candidates": list(candidates)})
                hit = self.cache.get(keys[i])
                if hit is not None:
                    out[i] = NextTokenScores(**hit)
                    self._record(qids[i], True, out[i].prompt_tokens, 0)
        todo = [i for i, s in enumerate(out) if s is None]
        if todo:
            scores = self.backend.next_token_logprobs_batch([prompts[i] for i in todo], candidates)
            for i, s in zip(todo, scores, strict=True):
                out[i] = s
                if self.cache is not None and keys[i] is not None:
                    self.cache.put(keys[i], asdict(s), model=self.backend.model_id,
                                   template=self.template_id, kind="logprobs")
                self._record(qids[i], False, s.prompt_tokens, 0)
        return out  # type: ignore[return-value]

    def next_token_logprobs(self, qid: str, prompt: Prompt,
                            candidates: Sequence[str]) -> NextTokenScores:
        key = None
        if self.cache is not None:
            key = self._key("logprobs", {"prompt": prompt, "candidates": list(candidates)})
            hit = self.cache.get(key)
            if hit is not None:
                s = NextTokenScores(**hit)
                self._record(qid, True, s.prompt_tokens, 0)
                return s
        s = self.backend.next_token_logprobs(prompt, candidates)
        if self.cache is not None and key is not None:
            self.cache.put(key, asdict(s), model=self.backend.model_id,
                           template=self.template_id, kind="logprobs")
        self._record(qid, False, s.prompt_tokens, 0)
        return s

    def total(self) -> Usage:
        t = Usage()
        with self._lock:
            for u in self.per_query.values():
                t += u
        return t


#: LLM re-rankers report through the one re-ranking report (usage, repairs, notes)
LLMRunReport = RerankReport


def timer() -> float:
    return time.perf_counter()
