"""Shared input encoding for every neural scorer: token budgets, batching, CPU runtime settings.

Three pieces, used by the encoder scorers here and by the T5 / decoder scorers:

* :class:`PairEncoder` tokenizes queries and passages **separately** (no special tokens),
  truncates each to its own budget in token space (``query_length``, ``doc_length``, like
  lightning-ir), then adds the tokenizer's own special tokens and token type ids via a
  :class:`SpecialLayout` learnt from the tokenizer. Text is never decoded and re-tokenized.
  The total never exceeds ``max_length``; truncated queries/passages are counted in
  :class:`TruncationCounts`. :meth:`PairEncoder.encode_template` builds templated inputs
  (``"Query: {query} Document: {doc} Relevant:"``) with the same budgets.
* :func:`run_batched` runs a forward function over encoded inputs in length-sorted batches with
  dynamic padding, streaming chunk by chunk (bounded memory for any number of inputs), and
  returns outputs in **input order**.
* :class:`RuntimeSettings` / :func:`resolve_dtype` / :func:`apply_threads`: thread count
  (default 1, often fastest on small shared CPUs) and dtype (``auto`` = bf16 when the CPU has
  AMX-BF16 or AVX512-BF16 per ``/proc/cpuinfo``, else fp32; ``bf16-mixed`` = fp32 weights
  under bf16 autocast: matmuls in bf16, norms/softmax in fp32 - a little slower than bf16
  weights, closer to fp32 rankings).

Nothing here imports torch at module import time; :class:`Batch` holds numpy arrays so ONNX
Runtime and torch backends share it (:meth:`Batch.torch` converts).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rankstack.errors import ConfigError

log = logging.getLogger("rankstack.rerank")

#: Default token budgets (lightning-ir's defaults are 32 / 512; passages of MS MARCO are short).
DEFAULT_QUERY_LENGTH = 32
DEFAULT_DOC_LENGTH = 480

PaddingSide = Literal["right", "left"]
DType = Literal["auto", "fp32", "bf16", "bf16-mixed"]
DTYPES = ("auto", "fp32", "bf16", "bf16-mixed")


# --------------------------------------------------------------------------------------------
# Special tokens
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecialLayout:
    """Where a tokenizer puts its special tokens around one or two sequences.

    Single: ``single_prefix + A + single_suffix``; pair:
    ``pair_prefix + A + pair_middle + B + pair_suffix``. Each part is a tuple of
    ``(token_id, type_id)``; ``type_a`` / ``type_b`` are the type ids of the A / B tokens.
    """

    single_prefix: tuple[tuple[int, int], ...]
    single_suffix: tuple[tuple[int, int], ...]
    pair_prefix: tuple[tuple[int, int], ...]
    pair_middle: tuple[tuple[int, int], ...]
    pair_suffix: tuple[tuple[int, int], ...]
    type_a_single: int = 0
    type_a: int = 0
    type_b: int = 1

    @property
    def n_single(self) -> int:
        return len(self.single_prefix) + len(self.single_suffix)

    @property
    def n_pair(self) -> int:
        return len(self.pair_prefix) + len(self.pair_middle) + len(self.pair_suffix)

    def build_single(self, a: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of one sequence with special tokens."""
        ids = [t for t, _ in self.single_prefix] + list(a) + [t for t, _ in self.single_suffix]
        types = ([y for _, y in self.single_prefix] + [self.type_a_single] * len(a)
                 + [y for _, y in self.single_suffix])
        return ids, types

    def build_pair(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of a sequence pair with special tokens."""
        ids = ([t for t, _ in self.pair_prefix] + list(a) + [t for t, _ in self.pair_middle]
               + list(b) + [t for t, _ in self.pair_suffix])
        types = ([y for _, y in self.pair_prefix] + [self.type_a] * len(a)
                 + [y for _, y in self.pair_middle] + [self.type_b] * len(b)
                 + [y for _, y in self.pair_suffix])
        return ids, types

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialLayout:
        """Learn the layout from a transformers tokenizer (fast backend or python backend)."""
        backend = getattr(tokenizer, "_tokenizer", None)
        if backend is not None and hasattr(backend, "post_process"):
            return cls._from_backend(backend)
        if hasattr(tokenizer, "build_inputs_with_special_tokens"):
            return cls._from_python(tokenizer)
        raise ConfigError(f"cannot find how tokenizer {type(tokenizer).__name__} adds special "
                          f"tokens (no fast backend, no build_inputs_with_special_tokens)")

    @classmethod
    def _from_backend(cls, backend: Any) -> SpecialLayout:
        from tokenizers import Tokenizer

        tk = Tokenizer.from_str(backend.to_str())  # a copy without padding/truncation state
        tk.no_padding()
        tk.no_truncation()

        def split(enc: Any) -> tuple[list[list[tuple[int, int]]], dict[int, int]]:
            parts: list[list[tuple[int, int]]] = [[]]
            seq_types: dict[int, int] = {}
            prev: int | None = None
            for tid, ty, sid in zip(enc.ids, enc.type_ids, enc.sequence_ids, strict=True):
                if sid is None:
                    parts[-1].append((tid, ty))
                else:
                    seq_types.setdefault(sid, ty)
                    if prev != sid:
                        parts.append([])
                prev = sid
            return parts, seq_types

        single, st = split(tk.encode("a", add_special_tokens=True))
        pair, pt = split(tk.encode("a", "b", add_special_tokens=True))
        if len(single) != 2 or len(pair) != 3:
            raise ConfigError("unexpected special-token layout from the tokenizer post-processor")
        return cls(tuple(single[0]), tuple(single[1]), tuple(pair[0]), tuple(pair[1]),
                   tuple(pair[2]), st.get(0, 0), pt.get(0, 0), pt.get(1, 1))

    @classmethod
    def _from_python(cls, tok: Any) -> SpecialLayout:
        # Sentinel ids (negative, never real) reveal where the special tokens go.
        def parts(ids: list[int], types: list[int]) -> list[list[tuple[int, int]]]:
            out: list[list[tuple[int, int]]] = [[]]
            for i, (t, y) in enumerate(zip(ids, types, strict=True)):
                if t < 0:
                    if i == 0 or ids[i - 1] >= 0:
                        out.append([])
                else:
                    out[-1].append((t, y))
            return out

        def types_of(a: list[int], b: list[int] | None, n: int) -> list[int]:
            if hasattr(tok, "create_token_type_ids_from_sequences"):
                return list(tok.create_token_type_ids_from_sequences(a, b))
            return [0] * n

        s_ids = tok.build_inputs_with_special_tokens([-1])
        s = parts(s_ids, types_of([-1], None, len(s_ids)))
        p_ids = tok.build_inputs_with_special_tokens([-1], [-2])
        p_types = types_of([-1], [-2], len(p_ids))
        p = parts(p_ids, p_types)
        ta = p_types[p_ids.index(-1)]
        tb = p_types[p_ids.index(-2)]
        return cls(tuple(s[0]), tuple(s[1]), tuple(p[0]), tuple(p[1]), tuple(p[2]), 0, ta, tb)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Encoded:
    """One model input before padding."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TruncationCounts:
    """How many inputs lost tokens to their budget (cumulative over an encoder's life)."""

    queries: int = 0
    passages: int = 0
    encoded: int = 0

    def snapshot(self) -> TruncationCounts:
        return TruncationCounts(self.queries, self.passages, self.encoded)

    def since(self, before: TruncationCounts) -> TruncationCounts:
        return TruncationCounts(self.queries - before.queries, self.passages - before.passages,
                                self.encoded - before.encoded)


#: A template segment: literal text, or the placeholder ``"{query}"`` / ``"{doc}"``.
Template = Sequence[str]


@dataclass
class PairEncoder:
    """Token-budgeted encoder of (query, passage) pairs and single texts.

    ``query_length`` / ``doc_length`` are budgets in tokens *without* special tokens;
    ``max_length`` caps the whole input including special tokens (the query is kept first,
    the passage gets what is left). Use :meth:`from_tokenizer` to fill ``max_length`` from
    the tokenizer / model config.
    """

    tokenizer: Any
    query_length: int = DEFAULT_QUERY_LENGTH
    doc_length: int = DEFAULT_DOC_LENGTH
    max_length: int = 512
    use_token_type_ids: bool = True
    counts: TruncationCounts = field(default_factory=TruncationCounts)
    layout: SpecialLayout | None = None

    def __post_init__(self) -> None:
        for name in ("query_length", "doc_length", "max_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, not {v!r}")
        if self.layout is None:
            self.layout = SpecialLayout.from_tokenizer(self.tokenizer)
        if self.max_length <= self.layout.n_pair + 1:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text")
        names = getattr(self.tokenizer, "model_input_names", ["token_type_ids"])
        self.use_token_type_ids = self.use_token_type_ids and "token_type_ids" in names

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, query_length: int | None = None,
                       doc_length: int | None = None, max_length: int | None = None,
                       model_config: Any = None, **kw: Any) -> PairEncoder:
        """Build with ``max_length`` = the smallest of ``max_length``, the tokenizer's
        ``model_max_length`` (when sane) and the model's ``max_position_embeddings``."""
        return cls(tokenizer, query_length or DEFAULT_QUERY_LENGTH,
                   doc_length or DEFAULT_DOC_LENGTH,
                   model_max_length(tokenizer, model_config, max_length), **kw)

    # -- tokenization --------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], budget: int) -> tuple[list[list[int]], list[bool]]:
        """Token ids without special tokens, each cut to ``budget``, and whether it was cut.

        Very long texts are pre-cut at a whitespace (a cheap bound; words are never split)
        and re-tokenized whole unless the cut text still has a margin of tokens past the
        budget.
        Counts nothing.
        """
        margin = 16
        char_cap = budget * 12 + 64
        cut = [t if len(t) <= char_cap else _cut_at_space(t, char_cap) for t in texts]
        ids = self._tok(cut)
        redo = [i for i, (t, c, x) in enumerate(zip(texts, cut, ids, strict=True))
                if len(c) < len(t) and len(x) < budget + margin]
        if redo:
            for i, x in zip(redo, self._tok([texts[i] for i in redo]), strict=True):
                ids[i] = x
        flags = [False] * len(ids)
        for i, x in enumerate(ids):
            if len(x) > budget:
                ids[i] = x[:budget]
                flags[i] = True
        return ids, flags

    def _tok(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        out = self.tokenizer(list(texts), add_special_tokens=False, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False,
                             verbose=False)
        return [list(x) for x in out["input_ids"]]

    # -- building inputs -----------------------------------------------------------------
    def encode_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        """Encode ``(queries[i], passages[i])`` as one pair input each (query = segment A).

        Repeated query strings are tokenized once.
        """
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        lay = self.layout
        assert lay is not None
        q_budget = min(self.query_length, self.max_length - lay.n_pair - 1)
        q_ids = self._tokenize_distinct(queries, q_budget, kind="queries")
        d_ids, d_cut = self.tokenize(passages, self.doc_length)
        out: list[Encoded] = []
        room = self.max_length - lay.n_pair
        for q, d, was_cut in zip(q_ids, d_ids, d_cut, strict=True):
            if len(d) > room - len(q):
                d = d[: room - len(q)]
                was_cut = True
            self.counts.passages += was_cut
            ids, types = lay.build_pair(q, d)
            out.append(Encoded(ids, types if self.use_token_type_ids else None))
        self.counts.encoded += len(out)
        return out

    def encode_single(self, texts: Sequence[str], budget: int | None = None, *,
                      kind: Literal["queries", "passages"] = "passages",
                      prefix: str = "", suffix_ids: Sequence[int] = ()) -> list[Encoded]:
        """Encode texts alone (bi-encoders): ``special + (prefix + text)[:budget] + suffix_ids``.

        ``prefix`` (e.g. ``"query: "``) does not use up the budget;
        ``suffix_ids`` (e.g. ``[eos_token_id]``) are appended after the text. The whole input is
        capped at ``max_length``.
        """
        lay = self.layout
        assert lay is not None
        if budget is None:
            budget = self.query_length if kind == "queries" else self.doc_length
        # The prefix is tokenized together with each text (tokenizing it apart can change
        # the tokens at the seam, e.g. SentencePiece's "▁"); it does not use up the budget.
        n_pre = len(self._tok([prefix])[0]) if prefix else 0
        room = self.max_length - lay.n_single - len(suffix_ids)
        if room - n_pre < 1:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text")
        budget = min(budget + n_pre, room)
        joined = [prefix + t for t in texts]
        ids = (self._tokenize_distinct(joined, budget, kind=kind) if kind == "queries"
               else self._tokenize_counted(joined, budget, kind))
        out = []
        for x in ids:
            i, t = lay.build_single(x + list(suffix_ids))
            out.append(Encoded(i, t if self.use_token_type_ids else None))
        self.counts.encoded += len(out)
        return out

    def encode_template(self, template: Template, queries: Sequence[str],
                        passages: Sequence[str], *, pair_split: int | None = None) -> list[Encoded]:
        """Encode ``template`` segments per pair, e.g.
        ``["Query: ", "{query}", " Document: ", "{doc}", " Relevant:"]``.

        Literal segments are tokenized once each (no special tokens); ``{query}`` /
        ``{doc}`` take the budgeted query / passage ids. With ``pair_split=k`` the segments
        before index ``k`` form sequence A and the rest sequence B of a pair input;
        otherwise the whole template is one sequence. The passage gives up tokens first
        when ``max_length`` would be exceeded. Note: each segment is tokenized on its own,
        so put separating spaces where the tokenizer expects them.
        """
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        lay = self.layout
        assert lay is not None
        lits = {s: self._tok([s])[0] for s in template if s not in ("{query}", "{doc}")}
        n_lit = sum(len(lits[s]) for s in template if s in lits)
        n_special = lay.n_pair if pair_split is not None else lay.n_single
        room = self.max_length - n_special - n_lit
        if room < 2:
            raise ConfigError(f"max_length {self.max_length} leaves no room for text in template")
        q_ids = self._tokenize_distinct(queries, min(self.query_length, room - 1), kind="queries")
        d_ids, d_cut = self.tokenize(passages, self.doc_length)
        out = []
        for q, d, was_cut in zip(q_ids, d_ids, d_cut, strict=True):
            if len(q) + len(d) > room:
                d = d[: room - len(q)]
                was_cut = True
            self.counts.passages += was_cut
            seg = [q if s == "{query}" else d if s == "{doc}" else lits[s] for s in template]
            if pair_split is None:
                ids, types = lay.build_single([t for s in seg for t in s])
            else:
                ids, types = lay.build_pair([t for s in seg[:pair_split] for t in s],
                                            [t for s in seg[pair_split:] for t in s])
            out.append(Encoded(ids, types if self.use_token_type_ids else None))
        self.counts.encoded += len(out)
        return out

    def _tokenize_counted(self, texts: Sequence[str], budget: int, kind: str) -> list[list[int]]:
        ids, flags = self.tokenize(texts, budget)
        if kind == "queries":
            self.counts.queries += sum(flags)
        else:
            self.counts.passages += sum(flags)
        return ids

    def _tokenize_distinct(self, texts: Sequence[str], budget: int, kind: str) -> list[list[int]]:
        """Tokenize each distinct text once; truncations are counted per input."""
        uniq = list(dict.fromkeys(texts))
        ids, flags = self.tokenize(uniq, budget)
        by_text = dict(zip(uniq, zip(ids, flags, strict=True), strict=True))
        n_cut = sum(by_text[t][1] for t in texts)
        if kind == "queries":
            self.counts.queries += n_cut
        else:
            self.counts.passages += n_cut
        return [by_text[t][0] for t in texts]


def _cut_at_space(text: str, cap: int) -> str:
    """``text`` cut before the last whitespace at or before ``cap`` (unchanged if none)."""
    i = max(text.rfind(" ", 0, cap + 1), text.rfind("\n", 0, cap + 1))
    return text[:i] if i > 0 else text


def model_max_length(tokenizer: Any, model_config: Any = None, requested: int | None = None) -> int:
    """The usable input length: min of ``requested``, a sane ``tokenizer.model_max_length``
    and ``config.max_position_embeddings`` (``n_positions`` for some models)."""
    limits = []
    if requested is not None:
        limits.append(int(requested))
    tm = getattr(tokenizer, "model_max_length", None)
    if isinstance(tm, int) and 0 < tm < 1_000_000:
        limits.append(tm)
    if model_config is not None:
        for key in ("max_position_embeddings", "n_positions"):
            v = getattr(model_config, key, None)
            if isinstance(v, int) and v > 0:
                # RoBERTa-style position ids start after the padding index.
                if getattr(model_config, "model_type", "") in ("roberta", "xlm-roberta",
                                                                "camembert"):
                    v -= 2
                limits.append(v)
                break
    return min(limits) if limits else 512


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A padded batch: numpy int64 arrays plus ``index``, the inputs' positions in the call."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None
    index: np.ndarray
    padding_side: PaddingSide = "right"

    def __len__(self) -> int:
        return len(self.index)

    def arrays(self) -> dict[str, np.ndarray]:
        """Model inputs by name (``token_type_ids`` only when the model takes them)."""
        d = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            d["token_type_ids"] = self.token_type_ids
        return d

    def torch(self) -> dict[str, Any]:
        """Model inputs as torch tensors (zero-copy)."""
        import torch

        return {k: torch.from_numpy(v) for k, v in self.arrays().items()}

    def position_ids(self) -> np.ndarray:
        """Positions counted over real tokens only (0 at each row's first real token), so
        left-padded rows get the same positions as unpadded ones."""
        return np.maximum(np.cumsum(self.attention_mask, axis=1) - 1, 0).astype(np.int64)

    def last_token_positions(self) -> np.ndarray:
        """Position of each row's last real (non-pad) token, for either padding side."""
        if self.padding_side == "left":
            return np.full(len(self), self.input_ids.shape[1] - 1, dtype=np.int64)
        return self.attention_mask.sum(axis=1).astype(np.int64) - 1


def pad_batch(items: Sequence[Encoded], index: np.ndarray, pad_token_id: int,
              padding_side: PaddingSide = "right") -> Batch:
    """Pad ``items`` to their longest length (dynamic padding)."""
    n = len(items)
    width = max(len(x) for x in items)
    ids = np.full((n, width), pad_token_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    has_types = items[0].token_type_ids is not None
    types = np.zeros((n, width), dtype=np.int64) if has_types else None
    for r, x in enumerate(items):
        k = len(x)
        sl = slice(0, k) if padding_side == "right" else slice(width - k, width)
        ids[r, sl] = x.input_ids
        mask[r, sl] = 1
        if types is not None:
            types[r, sl] = x.token_type_ids
    return Batch(ids, mask, types, index, padding_side)


def sorted_batches(items: Sequence[Encoded], batch_size: int, pad_token_id: int,
                   padding_side: PaddingSide = "right", offset: int = 0) -> Iterator[Batch]:
    """Length-sorted (longest first) padded batches of ``items``; ``index`` is
    ``offset`` + the position in ``items``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    lengths = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
    order = np.argsort(-lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        yield pad_batch([items[i] for i in idx], idx + offset, pad_token_id, padding_side)


def run_batched(n: int, encode: Callable[[int, int], Sequence[Encoded]],
                forward: Callable[[Batch], np.ndarray], *, batch_size: int, pad_token_id: int,
                padding_side: PaddingSide = "right", chunk_size: int = 8192,
                progress: Callable[[int], Any] | None = None) -> np.ndarray:
    """Run ``forward`` over ``n`` inputs and return its outputs stacked in input order.

    ``encode(start, stop)`` encodes inputs ``start:stop``; this streams ``chunk_size`` inputs
    at a time (bounded memory), sorts each chunk by length into batches of ``batch_size``
    with dynamic padding, and writes each batch's ``forward`` rows (shape ``(b,)`` or
    ``(b, d)``) back to their input positions. ``progress(k)`` is called after each batch.
    """
    if n == 0:
        return np.zeros((0,), dtype=np.float32)
    out: np.ndarray | None = None
    chunk_size = max(chunk_size, batch_size)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        items = encode(start, stop)
        if len(items) != stop - start:
            raise RuntimeError(f"encode({start}, {stop}) returned {len(items)} inputs")
        for batch in sorted_batches(items, batch_size, pad_token_id, padding_side, start):
            rows = np.asarray(forward(batch))
            if out is None:
                out = np.empty((n, *rows.shape[1:]), dtype=np.float32)
            out[batch.index] = rows
            if progress is not None:
                progress(len(batch))
    assert out is not None
    return out


# --------------------------------------------------------------------------------------------
# Runtime settings
# --------------------------------------------------------------------------------------------


@dataclass
class RuntimeSettings:
    """CPU/GPU runtime settings shared by every neural scorer.

    ``threads``: torch intra-op threads (default 1; ``0`` leaves torch's default).
    ``dtype``: ``auto`` (bf16 when :func:`cpu_has_bf16`, or on CUDA with bf16; else fp32),
    ``fp32``, ``bf16`` (bf16 weights) or ``bf16-mixed`` (fp32 weights, bf16 autocast: wrap
    forward passes in :meth:`autocast`). ``device``: ``cpu`` (default) or e.g. ``cuda``.
    """

    threads: int = 1
    dtype: DType = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be an integer >= 0, not {self.threads!r}")

    def apply(self) -> None:
        """Set the thread count (process-wide in torch)."""
        apply_threads(self.threads)

    def torch_dtype(self) -> Any:
        """dtype of the weights (fp32 for ``bf16-mixed``)."""
        return resolve_dtype(self.dtype, self.device)

    def autocast(self) -> Any:
        """Context for forward passes: bf16 autocast for ``bf16-mixed``, else a no-op."""
        import contextlib

        if self.dtype != "bf16-mixed":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


#: Alias used by training code.
cpu_supports_bf16 = cpu_has_bf16


def resolve_dtype(dtype: DType | str = "auto", device: str = "cpu") -> Any:
    """``auto|fp32|bf16|bf16-mixed`` -> the torch dtype of the weights; ``auto`` picks bf16
    only where it is native; ``bf16-mixed`` keeps fp32 weights (see RuntimeSettings.autocast)."""
    import torch

    if dtype in ("fp32", "bf16-mixed"):
        return torch.float32
    if dtype == "bf16":
        return torch.bfloat16
    if dtype != "auto":
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def apply_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` (``0`` = leave as is)."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Loading models
# --------------------------------------------------------------------------------------------


def check_model_path(model: str) -> str:
    """Return ``model`` (a ``bundled:<name>`` id resolved to its package directory); raise
    ConfigError when it is written as a local path that does not exist (``/x``, ``./x``, ``~/x``, ``x/`` or an existing parent dir). Hub names
    (``org/name``) pass through to ``from_pretrained``."""
    import pathlib

    if not isinstance(model, str) or not model:
        raise ConfigError(f"model must be a hub name or a local path, not {model!r}")
    if model.startswith("bundled:"):
        from rankstack.rerank.defaults import resolve_bundled

        return resolve_bundled(model)
    p = pathlib.Path(model).expanduser()
    looks_local = (model.startswith(("/", "./", "../", "~", ".\\")) or model.endswith(("/", "\\"))
                   or model.count("/") > 1)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"model path {model} is a file; give the model directory")
        return str(p)
    if looks_local:
        raise ConfigError(f"model path {model} does not exist")
    return model


def load_pretrained(auto_cls: Any, model: str, **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained(model, **kwargs)`` with clear errors: a missing local path,
    or a hub name that cannot be fetched (offline: set the path to a local copy)."""
    model = check_model_path(model)
    try:
        return auto_cls.from_pretrained(model, **kwargs)
    except OSError as exc:
        raise ConfigError(f"cannot load {getattr(auto_cls, '__name__', auto_cls)} from "
                          f"{model!r}: {exc}") from exc


def load_tokenizer(model: str, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with the errors of :func:`load_pretrained`."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, model, **kwargs)
