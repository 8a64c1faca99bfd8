"""Efficiency accounting of LLM runs and the cached, counted call path every re-ranker uses.

:class:`LLMCaller` wraps a backend with the cache and counts, per query and in total:
model calls, cache hits, prompt and generated tokens of the calls actually made (tokens
of cache hits are kept apart as ``cached_*``), and wall time. :class:`LLMRunReport` adds
the listwise repair counts, prints a rich table and is saved as JSON next to the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rankstack.io import atomic_write
from rankstack.llm.base import Generation, LLMBackend, NextTokenScores, Prompt
from rankstack.llm.cache import LLMCache, cache_key


@dataclass
class Usage:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    wall_s: float = 0.0

    def __iadd__(self, other: Usage) -> Usage:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall_s"] = round(self.wall_s, 4)
        return d


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


@dataclass
class LLMRunReport:
    """What one LLM re-ranking run cost and what its output parsing had to repair."""

    mode: str
    backend: dict[str, Any]
    template: str
    settings: dict[str, Any]
    per_query: dict[str, Usage]
    total: Usage
    wall_s: float
    repairs: dict[str, int] = field(default_factory=dict)
    repairs_per_query: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "backend": self.backend, "template": self.template,
            "settings": self.settings, "wall_s": round(self.wall_s, 4),
            "total": self.total.to_dict(),
            "per_query": {q: u.to_dict() for q, u in self.per_query.items()},
            "repairs": self.repairs, "repairs_per_query": self.repairs_per_query,
            "notes": self.notes,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=1, ensure_ascii=False)

    def print_table(self, console=None, max_rows: int = 20) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        t = Table(title=f"LLM {self.mode} re-ranking: {self.backend.get('model')} "
                        f"({self.backend.get('backend')}, {self.template})")
        for col in ("query", "calls", "cache hits", "prompt tok", "gen tok", "wall s"):
            t.add_column(col, justify="left" if col == "query" else "right")
        rows = list(self.per_query.items())
        for qid, u in rows[:max_rows]:
            t.add_row(qid, str(u.calls), str(u.cache_hits), str(u.prompt_tokens),
                      str(u.completion_tokens), f"{u.wall_s:.2f}")
        if len(rows) > max_rows:
            t.add_row(f"... {len(rows) - max_rows} more", "", "", "", "", "")
        u = self.total
        t.add_row("TOTAL", str(u.calls), str(u.cache_hits), str(u.prompt_tokens),
                  str(u.completion_tokens), f"{self.wall_s:.2f}", style="bold")
        console.print(t)
        if self.repairs:
            r = self.repairs
            console.print(
                f"output repairs: {r.get('repaired_windows', 0)}/{r.get('windows', 0)} windows "
                f"repaired; duplicates {r.get('duplicates', 0)}, out-of-range "
                f"{r.get('out_of_range', 0)}, missing {r.get('missing', 0)}, unparseable "
                f"{r.get('unparseable', 0)}")
        for k, v in self.notes.items():
            console.print(f"{k}: {v}")


def timer() -> float:
    return time.perf_counter()
