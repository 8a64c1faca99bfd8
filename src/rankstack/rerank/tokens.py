"""Token-budgeted encoding of (query, passage) pairs and single texts for encoder scorers.

:class:`PairEncoder` tokenizes queries and passages **separately** (no special tokens),
truncates each to its own budget in token space (``query_length``, ``doc_length``, like
lightning-ir), then adds the tokenizer's own special tokens and token type ids via a
:class:`SpecialLayout` learnt from the tokenizer. Text is never decoded and re-tokenized.
The total never exceeds ``max_length``; truncated queries/passages are counted in
:class:`TruncationCounts`.

``truncation="longest_first"`` (sentence-transformers' ``CrossEncoder``: the tokenizer
called on the pair with ``truncation=True, max_length=...``) instead keeps the query whole
and cuts tokens from whichever side is longer until the pair fits ``max_length``; the
published sentence-transformers cross-encoders are run that way (see the presets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rankstack.errors import ConfigError

#: Default token budgets (lightning-ir's defaults are 32 / 512; passages of MS MARCO are short).
DEFAULT_QUERY_LENGTH = 32
DEFAULT_DOC_LENGTH = 480

Truncation = Literal["budgets", "longest_first"]
TRUNCATIONS = ("budgets", "longest_first")
_UNCAPPED = 1 << 40




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


@dataclass
class PairEncoder:
    """Token-budgeted encoder of (query, passage) pairs and single texts.

    ``query_length`` / ``doc_length`` are budgets in tokens *without* special tokens;
    ``max_length`` caps the whole input including special tokens (the query is kept first,
    the passage gets what is left). Use :meth:`from_tokenizer` to fill ``max_length`` from
    the tokenizer / model config.

    ``truncation``: ``"budgets"`` (default: the per-side budgets above) or
    ``"longest_first"`` (pairs only: no per-side budgets, tokens are taken from the longer side
    until the pair fits ``max_length``, exactly as a Hugging Face tokenizer called with
    ``truncation=True`` - what sentence-transformers' ``CrossEncoder`` does).
    ``prefix_in_budget``: in :meth:`encode_single`, the prefix counts against the budget (as
    tevatron truncates ``"query: " + text``); default False (the prefix comes free).
    """

    tokenizer: Any
    query_length: int = DEFAULT_QUERY_LENGTH
    doc_length: int = DEFAULT_DOC_LENGTH
    max_length: int = 512
    use_token_type_ids: bool = True
    counts: TruncationCounts = field(default_factory=TruncationCounts)
    layout: SpecialLayout | None = None
    truncation: Truncation = "budgets"
    prefix_in_budget: bool = False

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation must be one of {', '.join(TRUNCATIONS)}, "
                              f"not {self.truncation!r}")
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
        if self.truncation == "longest_first":
            return self._encode_pairs_longest_first(queries, passages)
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

    def _encode_pairs_longest_first(self, queries: Sequence[str], passages: Sequence[str]
                                    ) -> list[Encoded]:
        lay = self.layout
        assert lay is not None
        room = self.max_length - lay.n_pair
        # whole lengths decide which side gives up tokens, so both are tokenized in full
        q_ids = self._tokenize_distinct(queries, _UNCAPPED, kind="none")
        d_ids, _ = self.tokenize(passages, _UNCAPPED)
        out: list[Encoded] = []
        for q, d in zip(q_ids, d_ids, strict=True):
            n_q, n_d = longest_first_lengths(len(q), len(d), room)
            self.counts.queries += n_q < len(q)
            self.counts.passages += n_d < len(d)
            ids, types = lay.build_pair(q[:n_q], d[:n_d])
            out.append(Encoded(ids, types if self.use_token_type_ids else None))
        self.counts.encoded += len(out)
        return out

    def encode_single(self, texts: Sequence[str], budget: int | None = None, *,
                      kind: Literal["queries", "passages"] = "passages",
                      prefix: str = "", suffix_ids: Sequence[int] = ()) -> list[Encoded]:
        """Encode texts alone (bi-encoders): ``special + (prefix + text)[:budget] + suffix_ids``.

        ``prefix`` (e.g. ``"query: "``) does not use up the budget (unless
        ``prefix_in_budget``);
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
        budget = min(budget if self.prefix_in_budget else budget + n_pre, room)
        joined = [prefix + t for t in texts]
        ids = (self._tokenize_distinct(joined, budget, kind=kind) if kind == "queries"
               else self._tokenize_counted(joined, budget, kind))
        out = []
        for x in ids:
            i, t = lay.build_single(x + list(suffix_ids))
            out.append(Encoded(i, t if self.use_token_type_ids else None))
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
        elif kind == "passages":
            self.counts.passages += n_cut
        return [by_text[t][0] for t in texts]


def longest_first_lengths(n_a: int, n_b: int, room: int) -> tuple[int, int]:
    """Lengths kept of two sequences under ``longest_first`` truncation to ``room`` tokens.

    The rule of the Hugging Face ``tokenizers`` library: nothing is cut when both fit; else
    the shorter side is kept whole when it leaves the longer side at least as many tokens;
    else both get half of ``room`` (the longer side the odd token).
    """
    if n_a + n_b <= room:
        return n_a, n_b
    short = min(n_a, n_b)
    keep_short, keep_long = short, max(short, room - short)
    if short > room or keep_short + keep_long > room:
        keep_short = room // 2
        keep_long = keep_short + room % 2
    return (keep_long, keep_short) if n_a > n_b else (keep_short, keep_long)


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


