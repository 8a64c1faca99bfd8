"""Decoder-only (LLM) pointwise re-rankers: RankLLaMA and yes/no prompting.

* ``rankllama`` (Ma et al. 2023, tevatron): a decoder with a 1-label sequence-classification
  head (``LlamaForSequenceClassification``). Inputs exactly as tevatron's RankLLaMA inference
  builds them (``examples/rankllama/data.py``): ``query: {query}`` and ``document: {doc}`` are
  each tokenized without special tokens and cut in token space to ``query_length`` (32) and
  ``doc_length`` (161 = tevatron's ``p_max_len - 3``) tokens *including* their prefixes, then
  joined as ``<s> query-ids <s> document-ids`` with **no** ``</s>`` (``append_eos=True`` adds
  one, as the model card's ``tokenizer(..., f"document: ... </s>")`` variant does). The score
  is the head's output at the last real token (``score_kind="logit"``). Padding is on the
  right and the pad id is never the id of a row's last real token (HF pools at the rightmost
  non-pad token; Llama has no pad token and padding with a real id would pool too early).
  ``lora=`` loads a PEFT adapter over the base model and merges it (the published
  ``castorini/rankllama-v1-7b-lora-passage`` is such an adapter over Llama-2-7B).
* ``yes-no``: a causal LM asked whether the passage answers the query, with a prompt that ends
  where the answer starts; the score is read from next-token logits at the last position:
  ``logit(Yes) - logit(No)`` (``score="logit_diff"``, default) or log-softmax over
  {Yes, No} taking Yes (``score="log_prob"``). The answer tokens follow the one rule of
  :mod:`rankstack.rerank.answer` (shared with the LLM pointwise re-ranker), or are given
  explicitly. Left padding with explicit position ids, so the
  last position is every row's real last token and positions start at 0 in every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rankstack.errors import ConfigError, require
from rankstack.rerank.answer import answer_tokens, drop_tail
from rankstack.rerank.batching import Batch
from rankstack.rerank.prompted import (
    PromptScorer,
    accepts,
    resolve_token_id,
)
from rankstack.rerank.runtime import TokenRowsFP32, fp32_classifier_head
from rankstack.rerank.t5 import check_template, render
from rankstack.rerank.tokens import Encoded, SpecialLayout

YES_NO_TEMPLATE = (
    "Passage: {doc}\nQuery: {query}\n"
    "Does the passage answer the query? Answer 'Yes' or 'No'.\nAnswer:"
)


def _one_placeholder(template: str, name: str, what: str) -> str:
    if not isinstance(template, str) or template.count("{" + name + "}") != 1:
        raise ConfigError(f"{what} must contain {{{name}}} exactly once: {template!r}")
    return template


class RankLlamaScorer(PromptScorer):
    """RankLLaMA: sequence-classification logit at the last real token (see module doc)."""

    family: ClassVar[str] = "rankllama"
    score_kind: ClassVar[str] = "logit"
    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"
    padding_side = "right"
    default_max_length: ClassVar[int] = 4096

    def __init__(self, model: Any, tokenizer: Any, *, query_template: str = "query: {query}",
                 doc_template: str = "document: {doc}", append_eos: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("doc_length", 161)  # tevatron: p_max_len 164 - 3, prefix included
        super().__init__(model, tokenizer, **kwargs)
        self.query_template = _one_placeholder(query_template, "query", "query_template")
        self.doc_template = _one_placeholder(doc_template, "doc", "doc_template")
        self.layout = SpecialLayout.from_tokenizer(tokenizer)
        self.append_eos = append_eos
        self.suffix: list[int] = []
        if append_eos:
            if tokenizer.eos_token_id is None:
                raise ConfigError(f"{self.name}: append_eos needs a tokenizer with an eos token")
            self.suffix = [int(tokenizer.eos_token_id)]
        n_labels = getattr(model.config, "num_labels", 1)
        if n_labels != 1:
            raise ConfigError(f"{self.name}: family 'rankllama' needs a 1-label head, the model "
                              f"has {n_labels} labels")
        self.pad_token_id = self._choose_pad()
        model.config.pad_token_id = self.pad_token_id
        if self._half_precision():
            fp32_classifier_head(model)
        if self.max_length - len(self._join([], [])) < 2:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text")

    @classmethod
    def _model_kwargs(cls) -> dict[str, Any]:
        return {"num_labels": 1}

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, lora: str | None = None,
                        **kwargs: Any) -> PromptScorer:
        """Load a merged checkpoint, or with ``lora=`` a PEFT adapter merged into
        ``name_or_path`` (the base model, whose tokenizer is used)."""
        scorer = super().from_pretrained(name_or_path, **kwargs)
        if lora:
            peft = require("peft", "train", "LoRA adapters")
            scorer.model = peft.PeftModel.from_pretrained(scorer.model, lora).merge_and_unload()
            scorer.model.config.pad_token_id = scorer.pad_token_id  # type: ignore[attr-defined]
            scorer.model.eval()
            if "name" not in kwargs:
                scorer.name = str(lora)
        return scorer

    def _choose_pad(self) -> int:
        tok = self.tokenizer
        last = set(self.suffix)
        for v in (tok.pad_token_id, tok.unk_token_id, 0):
            if v is not None and int(v) not in last:
                return int(v)
        return 1  # only reached when id 0 is the suffix token

    def _join(self, q: list[int], d: list[int]) -> list[int]:
        """``<s> q <s> d`` (+ ``</s>``); the tokenizer's pair layout when it has no bos."""
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return self.layout.build_pair(q, d)[0] + self.suffix
        return [int(bos), *q, int(bos), *d, *self.suffix]

    def _segment_ids(self, texts: list[str]) -> list[list[int]]:
        uniq = list(dict.fromkeys(texts))
        ids = self.tokenizer(uniq, add_special_tokens=False, verbose=False)["input_ids"]
        by = dict(zip(uniq, ids, strict=True))
        return [list(by[t]) for t in texts]

    def _encode(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        qa = self._segment_ids([self.query_template.replace("{query}", q) for q in queries])
        db = self._segment_ids([self.doc_template.replace("{doc}", d) for d in passages])
        out = []
        fixed = len(self._join([], []))
        for q, d in zip(qa, db, strict=True):
            q_cut, d_cut = len(q) > self.query_length, len(d) > self.doc_length
            q, d = q[: self.query_length], d[: self.doc_length]
            room = self.max_length - fixed - len(q)
            if room < 1:
                raise ConfigError(f"max_length {self.max_length} is too small for a "
                                  f"{len(q)}-token query")
            if len(d) > room:
                d, d_cut = d[:room], True
            self.counts.queries += q_cut
            self.counts.passages += d_cut
            out.append(Encoded(self._join(q, d)))
        self.counts.encoded += len(out)
        return out

    def _pad_id(self) -> int:
        return self.pad_token_id

    def _forward(self, batch: Batch) -> np.ndarray:
        ids = batch.input_ids
        rows = np.arange(len(batch))
        last = ids[rows, batch.last_token_positions()]
        pad = self.pad_token_id
        if (last == pad).any():
            # A passage ending in the pad id (only possible without the eos suffix): pad this
            # batch with an id no row ends with, so HF pools at the right token.
            pad = next(i for i in range(len(batch) + 1) if i not in set(last.tolist()))
            ids = ids.copy()
            ids[batch.attention_mask == 0] = pad
            batch = Batch(ids, batch.attention_mask, None, batch.index, batch.padding_side)
        config = self.model.config
        config.pad_token_id = pad
        try:
            logits = self.model(**self._device_inputs(batch), use_cache=False).logits
        finally:
            config.pad_token_id = self.pad_token_id
        return logits[:, 0].float().cpu().numpy()


class YesNoScorer(PromptScorer):
    """Causal LM yes/no prompting: next-token Yes vs No logits at the last position."""

    family: ClassVar[str] = "yes-no"
    score_kind: ClassVar[str] = "logit_diff"
    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    padding_side = "left"
    default_max_length: ClassVar[int] = 2048

    def __init__(self, model: Any, tokenizer: Any, *, template: str = YES_NO_TEMPLATE,
                 chat: bool = False, system: str | None = None, score: str = "logit_diff",
                 yes_token: str | int | None = None, no_token: str | int | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("doc_length", 256)
        super().__init__(model, tokenizer, **kwargs)
        self.template = check_template(template)
        if score not in ("logit_diff", "log_prob"):
            raise ConfigError(f"yes-no score must be 'logit_diff' or 'log_prob', not {score!r}")
        self.score_kind = score  # type: ignore[misc]  # per instance: the option decides
        self.chat = chat
        self.system = system
        if chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{self.name}: chat=True but the tokenizer has no chat template")
        context = self._prompt_texts(["q"], ["d"])[0]
        tails: list[list[int]] = []
        if yes_token is None and no_token is None:  # the one answer-token rule
            ids, tail = answer_tokens(
                lambda t: tokenizer(t, add_special_tokens=False)["input_ids"], context,
                ["Yes", "No"], "yes-no")
            tails = [tail]
        else:
            ids = []
            for tok, word, what in ((yes_token, "Yes", "yes_token"), (no_token, "No", "no_token")):
                if tok is not None:
                    ids.append(resolve_token_id(tokenizer, tok, f"yes-no {what}"))
                    continue
                (tid,), tail = answer_tokens(
                    lambda t: tokenizer(t, add_special_tokens=False)["input_ids"], context,
                    [word], "yes-no")
                ids.append(tid)
                tails.append(tail)
            if ids[0] == ids[1]:
                raise ConfigError(f"yes-no: Yes and No resolve to the same token id {ids[0]}")
        self.token_ids = ids
        # under bf16/fp16 weights the Yes/No rows of the LM head are computed in float32
        self._rows = TokenRowsFP32(model, ids) if self._half_precision() else None
        #: prompt-final ids that belong to the answer (a template's trailing space): dropped
        self.drop_tail: list[int] = tails[0] if tails else []
        self._keep_last = accepts(model.forward, "logits_to_keep")
        self._positions = accepts(model.forward, "position_ids")
        self._set_overhead(self._render_ids)

    def _prompt_texts(self, queries: list[str], docs: list[str]) -> list[str]:
        texts = [render(self.template, q, d) for q, d in zip(queries, docs, strict=True)]
        if not self.chat:
            return texts
        out = []
        for t in texts:
            msgs = ([{"role": "system", "content": self.system}] if self.system else [])
            msgs.append({"role": "user", "content": t})
            out.append(self.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                          add_generation_prompt=True))
        return out

    def _render_ids(self, queries: list[str], docs: list[str]) -> list[list[int]]:
        # a chat template writes its own bos; plain prompts get the tokenizer's special tokens
        out = self.tokenizer(self._prompt_texts(queries, docs), add_special_tokens=not self.chat,
                             verbose=False)["input_ids"]
        tail = getattr(self, "drop_tail", [])
        return [drop_tail(x, tail, "yes-no") for x in out]

    def _encode(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        return [Encoded(x) for x in self._fit(self._render_ids, queries, passages,
                                              self._overhead)]

    def last_logits(self, batch: Batch) -> Any:
        """Next-token logits (torch float32, ``(b, 2)``) for [Yes, No] after each prompt."""
        inputs = self._device_inputs(batch)
        kw: dict[str, Any] = {"use_cache": False}
        if self._positions:
            mask = inputs["attention_mask"]
            kw["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if self._keep_last:
            kw["logits_to_keep"] = 1
        logits = self.model(**inputs, **kw).logits
        if self._rows is not None:
            return self._rows.logits()[:, -1]
        return logits[:, -1, self.token_ids].float()

    def _forward(self, batch: Batch) -> np.ndarray:
        logits = self.last_logits(batch)
        if self.score_kind == "log_prob":
            s = logits.log_softmax(dim=-1)[:, 0]
        else:
            s = logits[:, 0] - logits[:, 1]
        return s.cpu().numpy()
