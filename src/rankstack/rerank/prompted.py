"""Shared machinery of the prompt-based scorers (T5 families in :mod:`.t5`, decoders in
:mod:`.decoder`): budgeted text cutting, token-id resolution, loading, batched scoring.

Why not tokenize each template segment on its own and concatenate the ids: that matches
whole-prompt tokenization only for tokenizers that split on whitespace first (T5's). SentencePiece-BPE (Llama-2: a segment alone gets a ``▁``)
and byte-level BPE (Llama-3, Qwen: a segment alone loses its leading space) tokenize a
concatenation differently. Prompted models were trained on whole prompts, so here the query
and passage are first cut to their token budgets **in the original text** (at the character
offset where the budget's last token ends, never by decoding) and the whole prompt is then
tokenized once, exactly as the model saw prompts in training. Batching, padding, runtime
settings and truncation counts come from :mod:`rankstack.rerank.batching`,
:mod:`rankstack.rerank.runtime` and :mod:`rankstack.rerank.tokens`.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from rankstack.errors import ConfigError, require
from rankstack.hf_loading import load_model, load_tokenizer
from rankstack.rerank.base import Scorer
from rankstack.rerank.batching import Batch, PaddingSide, run_batched
from rankstack.rerank.runtime import RuntimeSettings
from rankstack.rerank.tokens import (
    DEFAULT_DOC_LENGTH,
    DEFAULT_QUERY_LENGTH,
    Encoded,
    TruncationCounts,
    model_max_length,
)


def resolve_token_id(tokenizer: Any, token: str | int, what: str) -> int:
    """The vocabulary id of ``token``: an int id (checked), an exact vocabulary entry
    (``"▁true"``, ``"<extra_id_10>"``), or a string that encodes to exactly one token."""
    n = len(tokenizer)
    if isinstance(token, int) and not isinstance(token, bool):
        if not 0 <= token < n:
            raise ConfigError(f"{what}: token id {token} is outside the vocabulary (size {n})")
        return token
    if not isinstance(token, str) or not token:
        raise ConfigError(f"{what}: a token must be a non-empty string or an int id, not {token!r}")
    vocab = tokenizer.get_vocab()
    if token in vocab:
        return int(vocab[token])
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ConfigError(f"{what}: {token!r} is not one token of this tokenizer (it encodes to "
                          f"{pieces}); give a vocabulary entry or an id")
    return int(ids[0])


def continuation_token_id(tokenizer: Any, context: str, word: str, what: str
                          ) -> tuple[int, list[int]]:
    """The first token of ``word`` written right after ``context`` and the tail of
    ``context`` that merges into it (:func:`rankstack.rerank.answer.continuation_token`)."""
    from rankstack.rerank.answer import continuation_token

    return continuation_token(lambda t: tokenizer(t, add_special_tokens=False)["input_ids"],
                              context, word, what)


class TextCutter:
    """Cuts texts to a token budget in the original string (no decode/re-encode drift)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._offsets = bool(getattr(tokenizer, "is_fast", False))

    def lengths(self, texts: Sequence[str]) -> list[int]:
        out = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in out]

    def cut(self, texts: Sequence[str], budgets: int | Sequence[int]
            ) -> tuple[list[str], list[int], list[bool]]:
        """``(texts cut to their budget, token count kept, whether each was cut)``.

        ``budgets``: one budget for all, or one per text. Very long texts are pre-cut in
        characters (12 per token bounds any tokenizer here) before tokenizing.
        """
        n = len(texts)
        bud = [int(budgets)] * n if isinstance(budgets, int) else [int(b) for b in budgets]
        pre = [t if len(t) <= b * 12 + 64 else t[: b * 12 + 64] for t, b in zip(texts, bud,
                                                                                 strict=True)]
        if not pre:
            return [], [], []
        kw: dict[str, Any] = {"add_special_tokens": False, "verbose": False}
        if self._offsets:
            kw["return_offsets_mapping"] = True
        enc = self.tokenizer(pre, **kw)
        out, kept, flags = [], [], []
        for i, ids in enumerate(enc["input_ids"]):
            b = max(bud[i], 0)
            if len(ids) <= b:
                # a character pre-cut is only a cut if the text really was longer
                out.append(pre[i])
                kept.append(len(ids))
                flags.append(len(pre[i]) < len(texts[i]))
                continue
            if b == 0:
                out.append("")
            elif self._offsets:
                end = max(e for _, e in enc["offset_mapping"][i][:b])
                out.append(pre[i][:end])
            else:  # python tokenizers have no offsets: fall back to decoding the kept ids
                out.append(self.tokenizer.decode(ids[:b], skip_special_tokens=True))
            kept.append(b)
            flags.append(True)
        return out, kept, flags


class PromptScorer(Scorer):
    """Base of the transformers scorers that format a prompt per (query, passage) pair.

    Subclasses set ``family``/``score_kind``, ``auto_class`` (the transformers Auto class used
    by :meth:`from_pretrained`), and implement :meth:`_encode` and :meth:`_forward`.

    Token budgets: the query keeps at most ``query_length`` tokens and the passage at most
    ``doc_length``; the whole input never exceeds ``max_length`` (the passage gives up tokens
    first, the query and the template are always kept).
    """

    auto_class: ClassVar[str]
    padding_side: ClassVar[PaddingSide] = "right"
    default_max_length: ClassVar[int] = 512

    def __init__(self, model: Any, tokenizer: Any, *, name: str | None = None,
                 batch_size: int = 16, query_length: int = DEFAULT_QUERY_LENGTH,
                 doc_length: int = DEFAULT_DOC_LENGTH, max_length: int | None = None,
                 runtime: RuntimeSettings | None = None, show_progress: bool = False) -> None:
        for key, v in (("batch_size", batch_size), ("query_length", query_length),
                       ("doc_length", doc_length)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, not {v!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model, "name_or_path", "") or self.family)
        self.batch_size = batch_size
        self.query_length = query_length
        self.doc_length = doc_length
        self.max_length = model_max_length(tokenizer, getattr(model, "config", None),
                                           max_length or self.default_max_length)
        self.runtime = runtime or RuntimeSettings()
        self.show_progress = show_progress
        self.counts = TruncationCounts()
        self.cutter = TextCutter(tokenizer)
        self.model.eval()

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str, *, threads: int = 1, dtype: str = "auto",
                        device: str = "cpu", tokenizer: str | None = None,
                        revision: str | None = None, fp32_head: bool = True,
                        **kwargs: Any) -> PromptScorer:
        """Load model and tokenizer from a hub name or a local directory.

        ``threads``/``dtype``/``device``/``fp32_head``: see :class:`RuntimeSettings`; other
        keyword arguments go to the scorer's constructor.
        """
        require("transformers", "neural", "transformer re-rankers")
        runtime = RuntimeSettings(threads=threads, dtype=dtype, device=device,
                                  fp32_head=fp32_head)
        runtime.apply()
        tok = load_tokenizer(tokenizer or name_or_path, revision=revision)
        model = load_model(cls.auto_class, name_or_path, revision=revision,
                           dtype=runtime.dtype, device=runtime.device, **cls._model_kwargs())
        kwargs.setdefault("name", str(name_or_path))
        return cls(model, tok, runtime=runtime, **kwargs)

    @classmethod
    def _model_kwargs(cls) -> dict[str, Any]:
        return {}

    # -- scoring --------------------------------------------------------------------------
    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        import torch

        self.runtime.apply()
        bar = None
        if self.show_progress and len(queries) > self.batch_size:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(queries), desc=f"{self.family} scoring", unit="pair")
        try:
            with torch.inference_mode():
                out = run_batched(
                    len(queries), lambda a, b: self._encode(queries[a:b], passages[a:b]),
                    self._forward, batch_size=self.batch_size, pad_token_id=self._pad_id(),
                    padding_side=self.padding_side, progress=bar.update if bar else None)
        finally:
            if bar is not None:
                bar.close()
        return np.asarray(out, dtype=np.float32).reshape(-1)

    @abstractmethod
    def _encode(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        """Model inputs of the pairs, in order."""

    @abstractmethod
    def _forward(self, batch: Batch) -> np.ndarray:
        """Scores (float32, shape ``(len(batch),)``) of one padded batch, in batch order."""

    def _pad_id(self) -> int:
        tok = self.tokenizer
        for v in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
            if v is not None:
                return int(v)
        return 0

    # -- helpers for subclasses -----------------------------------------------------------
    def _set_overhead(self, render: Callable[[list[str], list[str]], list[list[int]]]) -> None:
        """Measure the template's token overhead; fail now if ``max_length`` leaves no room."""
        self._overhead = template_overhead(render, self.tokenizer)
        if self.max_length - self._overhead < 2:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text after the "
                              f"{self.family} template ({self._overhead} tokens)")

    def _half_precision(self) -> bool:
        """Whether the fp32 head applies: on, and the weights are bf16/fp16."""
        import torch

        p = next(iter(self.model.parameters()), None)
        return bool(self.runtime.fp32_head and p is not None
                    and p.dtype in (torch.bfloat16, torch.float16))

    def _device_inputs(self, batch: Batch) -> dict[str, Any]:
        dev = self.runtime.device
        return {k: v.to(dev) for k, v in batch.torch().items() if k != "token_type_ids"}

    def _cut_queries(self, queries: Sequence[str], budget: int
                     ) -> tuple[list[str], list[int]]:
        """Queries cut to ``budget`` (each distinct query once); counts cut queries per input."""
        uniq = list(dict.fromkeys(queries))
        texts, kept, flags = self.cutter.cut(uniq, budget)
        by = {q: (t, k, f) for q, t, k, f in zip(uniq, texts, kept, flags, strict=True)}
        self.counts.queries += sum(by[q][2] for q in queries)
        return [by[q][0] for q in queries], [by[q][1] for q in queries]

    def _fit(self, render: Callable[[list[str], list[str]], list[list[int]]],
             queries: Sequence[str], passages: Sequence[str], overhead: int
             ) -> list[list[int]]:
        """Ids of the rendered input per pair, within the budgets and ``max_length``.

        ``render(queries, passages) -> ids`` builds whole inputs for lists of (already cut)
        texts; ``overhead`` is the number of tokens the template and special tokens add. The
        passage budget shrinks by it and by the query's length so the total fits; a rare
        merge across the cut boundary is fixed by cutting the passage again.
        """
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        room = self.max_length - overhead
        if room < 2:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text after the "
                              f"template ({overhead} tokens)")
        # the query keeps at most query_length tokens and always leaves one for the passage
        qs, q_len = self._cut_queries(queries, min(self.query_length, room - 1))
        budgets = [min(self.doc_length, room - ql) for ql in q_len]
        ds, d_len, d_cut = self.cutter.cut(passages, budgets)
        out = render(qs, ds) if qs else []
        for i, ids in enumerate(out):
            dl, cut = d_len[i], d_cut[i]
            while len(ids) > self.max_length and dl > 0:
                dl = max(0, dl - (len(ids) - self.max_length))
                ids = render([qs[i]], [self.cutter.cut([ds[i]], dl)[0][0]])[0]
                cut = True
            if len(ids) > self.max_length:
                raise ConfigError(f"max_length {self.max_length} is too small for the template "
                                  f"and query {queries[i]!r}")
            out[i] = ids
            self.counts.passages += cut
        self.counts.encoded += len(out)
        return out


def template_overhead(render: Callable[[list[str], list[str]], list[list[int]]],
                      tokenizer: Any) -> int:
    """Tokens a template and its special tokens add around a query and a passage.

    Measured around a one-character probe, so pieces a template only produces around empty
    fields (a dangling space) are not counted; :meth:`PromptScorer._fit` fixes the rare
    off-by-one at a cut.
    """
    probe = len(tokenizer("x", add_special_tokens=False)["input_ids"])
    return max(0, min(len(render(["x"], ["x"])[0]) - 2 * probe, len(render([""], [""])[0])))


def accepts(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes keyword ``name`` (directly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params
