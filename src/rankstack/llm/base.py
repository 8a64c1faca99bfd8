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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from rankstack.errors import ConfigError, RankstackError

Message = dict[str, str]
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

    ``logprobs[c]`` is the log-probability of candidate ``c`` (log-sum-exp over the token
    variants that spell it, e.g. ``"Yes"`` and ``" Yes"``). ``missing`` names candidates
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

    def _candidate_ids(self, cand: str) -> list[int]:
        """First token ids of an answer word, bare and space-prefixed (``Yes``, ``▁Yes``,
        ``ĠYes``), skipping ids that decode to nothing; cached per word."""
        cache: dict[str, list[int]] = self.__dict__.setdefault("_cand_cache", {})
        if cand not in cache:
            found: list[int] = []
            for variant in (cand, " " + cand):
                enc = self._encode_plain(variant)
                if enc and self._decode_one(enc[0]).strip() and enc[0] not in found:
                    found.append(enc[0])
            if not found:
                raise ConfigError(f"candidate answer {cand!r} has no token in {self.model_id}")
            cache[cand] = found
        return cache[cand]

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
