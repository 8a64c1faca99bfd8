"""Length-sorted dynamic-padding batches over encoded inputs, streamed in bounded memory.

:func:`run_batched` runs a forward function over encoded inputs in length-sorted batches with
dynamic padding, streaming chunk by chunk, and returns outputs in **input order**.
:class:`Batch` holds numpy arrays so ONNX Runtime and torch backends share it
(:meth:`Batch.torch` converts). Nothing here imports torch at module import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rankstack.errors import ConfigError
from rankstack.rerank.tokens import Encoded

PaddingSide = Literal["right", "left"]


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
                   padding_side: PaddingSide = "right") -> Iterator[Batch]:
    """Length-sorted (longest first) padded batches of ``items``; ``index`` is the
    position in ``items``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    lengths = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
    order = np.argsort(-lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        yield pad_batch([items[i] for i in idx], idx, pad_token_id, padding_side)


def dedupe(items: Sequence[Encoded]) -> tuple[list[int], np.ndarray]:
    """Positions of the first copy of each distinct input, and for every input the index of
    its copy in that list. Identical inputs are run once, so they get identical outputs
    (a batch row's float result can depend on its neighbours and position: measured on AMD
    CPUs without AMX, two copies of one passage in one batch scored 1e-7 apart) and
    duplicate passages cost nothing."""
    seen: dict[tuple[tuple[int, ...], tuple[int, ...] | None], int] = {}
    first: list[int] = []
    inverse = np.empty(len(items), dtype=np.int64)
    for i, x in enumerate(items):
        key = (tuple(x.input_ids), None if x.token_type_ids is None else tuple(x.token_type_ids))
        j = seen.get(key)
        if j is None:
            j = seen[key] = len(first)
            first.append(i)
        inverse[i] = j
    return first, inverse


def run_batched(n: int, encode: Callable[[int, int], Sequence[Encoded]],
                forward: Callable[[Batch], np.ndarray], *, batch_size: int, pad_token_id: int,
                padding_side: PaddingSide = "right", chunk_size: int = 8192,
                progress: Callable[[int], Any] | None = None) -> np.ndarray:
    """Run ``forward`` over ``n`` inputs and return its outputs stacked in input order.

    ``encode(start, stop)`` encodes inputs ``start:stop``; this streams ``chunk_size`` inputs
    at a time (bounded memory), runs each distinct input of a chunk once (:func:`dedupe`),
    sorts them by length into batches of ``batch_size`` with dynamic padding, and writes each
    batch's ``forward`` rows (shape ``(b,)`` or ``(b, d)``) back to the positions of every
    copy. ``progress(k)`` is called after each batch with the inputs it covered.
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
        first, inverse = dedupe(items)
        copies = np.bincount(inverse, minlength=len(first))
        uniq_out: np.ndarray | None = None
        for batch in sorted_batches([items[i] for i in first], batch_size, pad_token_id,
                                    padding_side):
            rows = np.asarray(forward(batch))
            if uniq_out is None:
                uniq_out = np.empty((len(first), *rows.shape[1:]), dtype=np.float32)
            uniq_out[batch.index] = rows
            if progress is not None:
                progress(int(copies[batch.index].sum()))
        assert uniq_out is not None
        if out is None:
            out = np.empty((n, *uniq_out.shape[1:]), dtype=np.float32)
        out[start:stop] = uniq_out[inverse]
    assert out is not None
    return out
