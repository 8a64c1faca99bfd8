"""Encoder-decoder (T5) pointwise re-rankers: monoT5, TWOLAR, RankT5.

All three encode a prompt with the encoder, run **one** decoder step from
``decoder_start_token_id`` and read next-token logits of that step:

* ``monot5`` (Nogueira et al. 2020, pygaggle): ``Query: {query} Document: {doc} Relevant:``;
  score = log-softmax over the two logits [``▁true``, ``▁false``], taking ``▁true``
  (``score_kind="log_prob"``: log P(true | true-or-false), <= 0).
* ``twolar`` (Baldelli et al. 2024, github.com/Dundalia/TWOLAR): prompt
  ``Query: {query} Document: {doc} Relevant: `` (their trailing space is dropped by T5's
  whitespace pre-tokenizer), inputs capped at 500 tokens as in their code (with
  ``truncation="tail"``, the preset's choice, exactly their whole-string cut); score =
  logit(``▁true``) - logit(``▁false``) (their default "difference" strategy,
  ``score_kind="logit_diff"``).
* ``rankt5`` (Zhuang et al. 2023): ``Query: {query} Document: {doc}``; score = the raw logit of
  an unused sentinel token, ``<extra_id_10>`` by default (``score_kind="logit"``).

Token names are vocabulary entries (T5 SentencePiece pieces, e.g. ``▁true`` = id 1176 in the
T5 vocabulary), resolved from the tokenizer; an int id is accepted as well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rankstack.errors import ConfigError
from rankstack.rerank.batching import Batch
from rankstack.rerank.prompted import PromptScorer, resolve_token_id
from rankstack.rerank.runtime import TokenRowsFP32
from rankstack.rerank.tokens import Encoded

_PLACEHOLDER = re.compile(r"\{(query|doc)\}")


def check_template(template: str, what: str = "template") -> str:
    """A prompt template must contain ``{query}`` and ``{doc}`` exactly once each."""
    if not isinstance(template, str):
        raise ConfigError(f"{what} must be a string, not {type(template).__name__}")
    found = _PLACEHOLDER.findall(template)
    if sorted(found) != ["doc", "query"]:
        raise ConfigError(f"{what} must contain {{query}} and {{doc}} exactly once each: "
                          f"{template!r}")
    return template


def render(template: str, query: str, doc: str) -> str:
    """Fill ``{query}`` and ``{doc}`` in one pass (text containing braces is left alone)."""
    vals = {"query": query, "doc": doc}
    return _PLACEHOLDER.sub(lambda m: vals[m.group(1)], template)


class T5PointwiseScorer(PromptScorer):
    """Base of the single-decoder-step T5 scorers; subclasses define ``_score_logits``."""

    auto_class: ClassVar[str] = "AutoModelForSeq2SeqLM"
    default_template: ClassVar[str]

    def __init__(self, model: Any, tokenizer: Any, *, template: str | None = None,
                 truncation: str = "budgets", **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.template = check_template(template or self.default_template)
        if truncation not in ("budgets", "tail"):
            raise ConfigError(f"{self.family} truncation must be 'budgets' or 'tail', not "
                              f"{truncation!r}")
        #: ``budgets``: query/passage budgets, the template always kept (rankstack, and
        #: pyterrier_t5 keeps the prompt too); ``tail``: the whole prompt tokenized and cut at
        #: ``max_length`` from the end, the final ``</s>`` kept (``tokenizer(..., truncation=True,
        #: max_length=...)`` as TWOLAR and pygaggle do: a long passage loses ``Relevant:``).
        self.truncation = truncation
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            raise ConfigError(f"{self.name}: model config has no decoder_start_token_id; "
                              f"family {self.family!r} needs an encoder-decoder model")
        self.decoder_start_token_id = int(start)
        self._set_overhead(self._render_ids)
        self.token_ids: list[int] = []
        self._rows: TokenRowsFP32 | None = None

    def _set_token_ids(self, ids: list[int]) -> None:
        self.token_ids = ids
        # under bf16/fp16 weights the scored rows of the LM head are computed in float32
        self._rows = TokenRowsFP32(self.model, ids) if self._half_precision() else None

    def _render_ids(self, queries: list[str], docs: list[str]) -> list[list[int]]:
        texts = [render(self.template, q, d) for q, d in zip(queries, docs, strict=True)]
        return [list(x) for x in self.tokenizer(texts, add_special_tokens=True,
                                                verbose=False)["input_ids"]]

    def _encode(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        if self.truncation == "tail":
            return self._encode_tail(queries, passages)
        return [Encoded(x) for x in self._fit(self._render_ids, queries, passages,
                                              self._overhead)]

    def _encode_tail(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        texts = [render(self.template, q, d) for q, d in zip(queries, passages, strict=True)]
        full = self._render_ids(list(queries), list(passages))
        cut = self.tokenizer(texts, add_special_tokens=True, truncation=True,
                             max_length=self.max_length, verbose=False)["input_ids"]
        self.counts.passages += sum(len(a) != len(b) for a, b in zip(full, cut, strict=True))
        self.counts.encoded += len(cut)
        return [Encoded(list(x)) for x in cut]

    def first_step_logits(self, batch: Batch) -> Any:
        """Next-token logits (torch, float32, ``(b, len(token_ids))``) at the first decoder
        step for :attr:`token_ids`."""
        import torch

        inputs = self._device_inputs(batch)
        dec = torch.full((len(batch), 1), self.decoder_start_token_id, dtype=torch.long,
                         device=inputs["input_ids"].device)
        logits = self.model(**inputs, decoder_input_ids=dec, use_cache=False).logits
        if self._rows is not None:
            return self._rows.logits()[:, 0]
        return logits[:, 0, self.token_ids].float()

    def _forward(self, batch: Batch) -> np.ndarray:
        return self._score_logits(self.first_step_logits(batch)).cpu().numpy()

    def _score_logits(self, logits: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class MonoT5Scorer(T5PointwiseScorer):
    """monoT5: log P(``▁true``) after a softmax over {``▁true``, ``▁false``}."""

    family: ClassVar[str] = "monot5"
    score_kind: ClassVar[str] = "log_prob"
    default_template: ClassVar[str] = "Query: {query} Document: {doc} Relevant:"

    def __init__(self, model: Any, tokenizer: Any, *, true_token: str | int = "▁true",
                 false_token: str | int = "▁false", **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        t = resolve_token_id(tokenizer, true_token, f"{self.family} true_token")
        f = resolve_token_id(tokenizer, false_token, f"{self.family} false_token")
        if t == f:
            raise ConfigError(f"{self.family}: true_token and false_token are the same id {t}")
        self._set_token_ids([t, f])

    def _score_logits(self, logits: Any) -> Any:
        return logits.log_softmax(dim=-1)[:, 0]


class TwolarScorer(MonoT5Scorer):
    """TWOLAR: logit(``▁true``) - logit(``▁false``) at the first decoder step."""

    family: ClassVar[str] = "twolar"
    score_kind: ClassVar[str] = "logit_diff"
    default_template: ClassVar[str] = "Query: {query} Document: {doc} Relevant: "
    default_max_length: ClassVar[int] = 500

    def _score_logits(self, logits: Any) -> Any:
        return logits[:, 0] - logits[:, 1]


class RankT5Scorer(T5PointwiseScorer):
    """RankT5 (encoder-decoder): the logit of one sentinel token at the first decoder step."""

    family: ClassVar[str] = "rankt5"
    score_kind: ClassVar[str] = "logit"
    default_template: ClassVar[str] = "Query: {query} Document: {doc}"

    def __init__(self, model: Any, tokenizer: Any, *, score_token: str | int = "<extra_id_10>",
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self._set_token_ids([resolve_token_id(tokenizer, score_token,
                                              f"{self.family} score_token")])

    def _score_logits(self, logits: Any) -> Any:
        return logits[:, 0]
