"""The LLM backend interface shared by every backend (HF, GGUF, OpenAI-compatible HTTP).

A backend does three things: greedy text generation (listwise re-ranking), next-token
log-probabilities of a few candidate answers (pointwise yes/no re-ranking), and token
counting / truncation with its own tokenizer.

Prompts are either a plain string or chat messages (``[{"role": ..., "content": ...}]``).
Backends with a chat template apply it to messages; without one, messages are joined
into a plain prompt by :func:`plain_prompt` (contents separated by blank lines).

Decoding is always greedy (temperature 0), so a call is a pure function of its input;
that is what makes the on-disk call cache (:mod:`rankstack.llm.cache`) sound.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from rankstack.errors import RankstackError

Message = dict[str, str]
R = TypeVar("R")
Prompt = str | list[Message]


class LLMBackendError(RankstackError):
    """A backend call failed for good (server errors after all retries, bad responses)."""


@dataclass
class Generation:
    """Generated text and what the call cost in tokens."""

    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class NextTokenScores:
    """Log-probabilities of candidate answers as the next token after a prompt.

    ``logprobs[c]`` is the log-probability of candidate ``c``'s answer token, chosen by the
    one rule of :mod:`rankstack.rerank.answer` (HTTP: the returned tokens whose stripped text
    is ``c``, log-sum-exp). ``missing`` names candidates
    a server did not return among its top log-probs; their value is the smallest returned
    log-prob, an upper bound (counted by the pointwise re-ranker).
    """

    logprobs: dict[str, float]
    prompt_tokens: int
    missing: list[str] = field(default_factory=list)


class LLMBackend(ABC):
    """One LLM behind a uniform interface. Implementations are registered in
    :data:`rankstack.llm.registry.BACKENDS`."""

    #: registry key
    kind: ClassVar[str]
    #: model identity used in cache keys and run names (hub name, path, or server model)
    model_id: str
    #: how many calls may run at once (1 for in-process models)
    max_concurrency: int = 1
    #: prompts per batched forward pass of :meth:`generate_batch` (in-process backends)
    batch_size: int = 1

    @property
    @abstractmethod
    def has_chat_template(self) -> bool:
        """Whether chat messages are formatted with a chat template (else joined plainly)."""

    @abstractmethod
    def generate(self, prompt: Prompt, *, max_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> Generation:
        """Greedy generation of at most ``max_tokens`` tokens, cut at the first ``stop``."""

    @abstractmethod
    def next_token_logprobs(self, prompt: Prompt, candidates: Sequence[str]) -> NextTokenScores:
        """Log-probabilities of each candidate string being the next token after ``prompt``."""

    def _encode_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (local-tokenizer backends)."""
        raise NotImplementedError

    def _decode_one(self, token_id: int) -> str:
        raise NotImplementedError

    def answer_ids(self, prompt_text: str, candidates: Sequence[str]
                   ) -> tuple[list[int], list[int]]:
        """Token ids of the answer words after ``prompt_text`` and the prompt-final tail to
        drop: the one rule of :mod:`rankstack.rerank.answer` (local-tokenizer backends).
        Only the prompt's end matters, so results are cached by its last 64 characters."""
        from rankstack.rerank.answer import answer_tokens

        cache: dict[tuple[str, tuple[str, ...]], tuple[list[int], list[int]]] = \
            self.__dict__.setdefault("_answer_cache", {})
        key = (prompt_text[-64:], tuple(candidates))
        if key not in cache:
            cache[key] = answer_tokens(self._encode_plain, key[0], list(candidates),
                                       str(self.model_id))
        return cache[key]

    def generate_batch(self, prompts: Sequence[Prompt], *, max_tokens: int | Sequence[int] = 64,
                       stop: Sequence[str] | None = None) -> list[Generation]:
        """:meth:`generate` for many prompts (``max_tokens`` one value or one per prompt), in
        input order, each result the one a single call gives.

        Default: up to :attr:`max_concurrency` single calls at once (an HTTP server batches
        concurrent requests itself); in-process backends override it with batched forward
        passes of :attr:`batch_size` prompts.
        """
        caps = per_prompt(max_tokens, len(prompts))
        return _map_concurrent(
            lambda i: self.generate(prompts[i], max_tokens=caps[i], stop=stop),
            len(prompts), self.max_concurrency)

    def next_token_logprobs_batch(self, prompts: Sequence[Prompt],
                                  candidates: Sequence[str]) -> list[NextTokenScores]:
        """:meth:`next_token_logprobs` for many prompts, in input order (batched like
        :meth:`generate_batch`)."""
        return _map_concurrent(lambda i: self.next_token_logprobs(prompts[i], candidates),
                               len(prompts), self.max_concurrency)

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by this backend's tokenizer (no special tokens)."""

    @abstractmethod
    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens."""

    def cache_identity(self) -> str:
        """What identifies this backend's outputs in cache keys: kind, model and any setting
        that changes the prompt the model sees or its numerics."""
        return f"{self.kind}:{self.model_id}"

    def describe(self) -> dict[str, object]:
        """Settings that identify this backend in reports."""
        return {"backend": self.kind, "model": self.model_id}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Optional."""


def per_prompt(max_tokens: int | Sequence[int], n: int) -> list[int]:
    caps = [int(max_tokens)] * n if isinstance(max_tokens, int) else [int(m) for m in max_tokens]
    if len(caps) != n:
        raise ValueError(f"{len(caps)} max_tokens values for {n} prompts")
    return caps


def _map_concurrent(fn: Callable[[int], R], n: int, workers: int) -> list[R]:
    """``[fn(i) for i in range(n)]``, at most ``workers`` at once; order kept."""
    if workers <= 1 or n <= 1:
        return [fn(i) for i in range(n)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, n)) as pool:
        return list(pool.map(fn, range(n)))


def plain_prompt(prompt: Prompt) -> str:
    """A prompt as one string: messages' contents joined by blank lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in prompt)


def logsumexp(values: Sequence[float]) -> float:
    if not values:
        return -math.inf
    m = max(values)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(v - m) for v in values))


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to (not including) the earliest stop string."""
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
