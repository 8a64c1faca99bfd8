"""Sliding-window listwise re-ranking and permutation parsing (RankGPT-style).

The model-independent half of listwise re-ranking, reusable by any listwise ranker
(text LLMs here, PE-Rank elsewhere):

* :func:`sliding_windows` - the window arithmetic: back to front, ``window`` wide, moving
  ``stride`` towards the top each step, so strong passages bubble up from the bottom.
* :func:`parse_permutation` / :func:`repair_permutation` - turn model output such as
  ``"[3] > [1] > [2]"`` into a full permutation, with every repair counted.
* :class:`SlidingWindowReranker` - drives a ``rank_window(query, passages) -> ids`` callable
  over the windows for one or more passes; :meth:`~SlidingWindowReranker.rerank_many` slides
  the windows of many queries in lockstep, so one batched call ranks the current window of
  every query (``rank_windows``).

Repair policy (applied to every window, every repair counted in :class:`RepairStats`):

1. Ids are read from the text: if any ``[k]`` appears, only bracketed numbers count;
   otherwise every bare integer counts (models sometimes drop the brackets). With
   ``mode="all"`` (rank_llm / RankGPT, the presets' choice) every integer counts.
2. An id outside ``1..n`` is dropped (``out_of_range``).
3. A repeated id keeps its first occurrence; later ones are dropped (``duplicates``).
4. Ids the model never named are appended after the named ones, in the order they had
   before this window (``missing``).
5. Output with no usable id at all leaves the window in its previous order
   (``unparseable``; its ids are *not* also counted as missing).

So garbage output never fails a run: at worst a window keeps its input order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Generic, Literal, TypeVar

from rankstack.errors import ConfigError

T = TypeVar("T")

_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_BARE = re.compile(r"\d+")


WindowPolicy = Literal["rank_llm", "rankgpt"]


def sliding_windows(n: int, window: int = 20, stride: int = 10,
                    policy: WindowPolicy = "rank_llm") -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` windows over ``n`` items, from the bottom to the top.

    The first window ends at ``n``; each next one is ``stride`` higher; the last one always
    starts at 0 (so the top of the list is always re-ranked, even when ``n - window`` is not a
    multiple of ``stride``). ``n=100, window=20, stride=10`` gives 9 windows:
    ``(80, 100), (70, 90), ..., (0, 20)``. ``n <= window`` gives the single window ``(0, n)``.
    This is rank_llm's loop (``while end_pos > rank_start and start_pos + step !=
    rank_start``). ``policy="rankgpt"`` is RankGPT's original loop (``while end_pos >
    rank_start``): it goes on after the window that starts at 0 while its end is above 0, so
    ``n=100`` gets a 10th window ``(0, 10)`` and ``n=25`` windows ``(5, 25), (0, 15), (0, 5)``.
    """
    if policy not in ("rank_llm", "rankgpt"):
        raise ConfigError(f"window policy must be 'rank_llm' or 'rankgpt', not {policy!r}")
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window}")
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if stride > window:
        raise ConfigError(f"stride ({stride}) larger than window ({window}) would skip items")
    if n <= 0:
        return []
    out: list[tuple[int, int]] = []
    end = n
    while True:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0 and (policy == "rank_llm" or end - stride <= 0):
            return out
        end -= stride


@dataclass
class RepairStats:
    """Counts of what the repair policy had to fix (see the module docstring)."""

    windows: int = 0
    #: windows whose output needed any repair
    repaired_windows: int = 0
    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0
    unparseable: int = 0

    def __iadd__(self, other: RepairStats) -> RepairStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def __add__(self, other: RepairStats) -> RepairStats:
        out = RepairStats(**asdict(self))
        out += other
        return out

    @property
    def clean(self) -> bool:
        return self.repaired_windows == 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


IdParsing = Literal["bracketed", "all"]


def extract_ids(text: str, mode: IdParsing = "bracketed") -> list[int]:
    """Integers the model named, in order.

    ``bracketed`` (default): bracketed ``[k]`` if any, else bare numbers. ``all``: every run of
    digits, bracketed or not - rank_llm's and RankGPT's ``_clean_response`` (so in
    ``"[3] > 1 > [2]"`` the bare ``1`` counts too).
    """
    if mode == "all":
        return [int(x) for x in _BARE.findall(text)]
    if mode != "bracketed":
        raise ConfigError(f"id parsing must be 'bracketed' or 'all', not {mode!r}")
    found = _BRACKETED.findall(text)
    if not found:
        found = _BARE.findall(text)
    return [int(x) for x in found]


def repair_permutation(ids: Sequence[int], n: int, *, base: int = 0) -> tuple[list[int], RepairStats]:
    """Make ``ids`` (``base``-based) a full 0-based permutation of ``range(n)``; count repairs."""
    stats = RepairStats(windows=1)
    seen: set[int] = set()
    perm: list[int] = []
    for raw in ids:
        i = int(raw) - base
        if not 0 <= i < n:
            stats.out_of_range += 1
        elif i in seen:
            stats.duplicates += 1
        else:
            seen.add(i)
            perm.append(i)
    if n and not perm:
        stats.unparseable = 1
        perm = list(range(n))
    else:
        rest = [i for i in range(n) if i not in seen]
        stats.missing = len(rest)
        perm.extend(rest)
    if stats.duplicates or stats.out_of_range or stats.missing or stats.unparseable:
        stats.repaired_windows = 1
    return perm, stats


def parse_permutation(text: str, n: int) -> tuple[list[int], RepairStats]:
    """Parse ``"[3] > [1] > [2]"`` (1-based ids) into a 0-based permutation of ``range(n)``."""
    return repair_permutation(extract_ids(text), n, base=1)


#: ``rank_window(query, passages) -> ids``: 0-based ids in the model's preferred order. The
#: ids may be broken (duplicates, gaps, out of range); the reranker repairs and counts them.
RankWindowFn = Callable[[str, Sequence[T]], Sequence[int]]


#: ``rank_windows([(query, passages), ...]) -> [ids, ...]``: the current window of many
#: queries in one call (a backend batches them); one id list per window, as for ``rank_window``.
RankWindowsFn = Callable[[Sequence[tuple[Any, Sequence[T]]]], Sequence[Sequence[int]]]


class SlidingWindowReranker(Generic[T]):
    """Re-rank a candidate list with a window ranker, back to front, for ``passes`` passes."""

    def __init__(self, rank_window: RankWindowFn, *, window: int = 20, stride: int = 10,
                 passes: int = 1, policy: WindowPolicy = "rank_llm") -> None:
        if passes < 1:
            raise ConfigError(f"passes must be >= 1, got {passes}")
        sliding_windows(window, window, stride, policy)  # validates window/stride/policy
        self.policy = policy
        self.rank_window = rank_window
        self.window = window
        self.stride = stride
        self.passes = passes

    def rerank(self, query: str, items: Sequence[T]) -> tuple[list[int], RepairStats]:
        """Return the new order as indices into ``items`` (best first) and the repair counts."""
        order = list(range(len(items)))
        stats = RepairStats()
        for _ in range(self.passes):
            for start, end in sliding_windows(len(order), self.window, self.stride, self.policy):
                chunk = order[start:end]
                raw = self.rank_window(query, [items[i] for i in chunk])
                perm, s = repair_permutation(raw, len(chunk))
                stats += s
                order[start:end] = [chunk[p] for p in perm]
        return order, stats

    def rerank_many(self, lists: Sequence[tuple[Any, Sequence[T]]],
                    rank_windows: RankWindowsFn | None = None, *,
                    on_done: Callable[[int], None] | None = None
                    ) -> list[tuple[list[int], RepairStats]]:
        """:meth:`rerank` of many ``(query, items)`` lists, window by window across lists
        (``query`` is passed through to ``rank_windows`` as it is: text, or any key).

        Step ``k`` takes window ``k`` of every list that still has one and ranks them all in
        one ``rank_windows`` call (default: ``rank_window`` on each); a list's windows stay in
        their order, since each starts from the order the previous one left. With a window
        ranker that is a pure function of its input, every list's result is what
        :meth:`rerank` gives it alone. ``on_done(i)`` is called when list ``i`` is finished.
        """
        if rank_windows is None:
            def rank_windows(batch):  # noqa: ANN001, ANN202 - the one-at-a-time path
                return [self.rank_window(q, ps) for q, ps in batch]
        orders = [list(range(len(items))) for _, items in lists]
        stats = [RepairStats() for _ in lists]
        plans = [[w for _ in range(self.passes)
                  for w in sliding_windows(len(items), self.window, self.stride, self.policy)]
                 for _, items in lists]
        for i, plan in enumerate(plans):
            if not plan and on_done is not None:
                on_done(i)
        step = 0
        while True:
            live = [i for i, plan in enumerate(plans) if step < len(plan)]
            if not live:
                return list(zip(orders, stats, strict=True))
            chunks = {i: orders[i][plans[i][step][0]:plans[i][step][1]] for i in live}
            raw = list(rank_windows([(lists[i][0], [lists[i][1][j] for j in chunks[i]])
                                     for i in live]))
            if len(raw) != len(live):
                raise ValueError(f"rank_windows returned {len(raw)} answers for {len(live)} "
                                 f"windows")
            for i, ids in zip(live, raw, strict=True):
                start, end = plans[i][step]
                perm, s = repair_permutation(ids, end - start)
                stats[i] += s
                orders[i][start:end] = [chunks[i][p] for p in perm]
                if step == len(plans[i]) - 1 and on_done is not None:
                    on_done(i)
            step += 1


__all__ = [
    "RankWindowFn",
    "RankWindowsFn",
    "RepairStats",
    "SlidingWindowReranker",
    "extract_ids",
    "parse_permutation",
    "repair_permutation",
    "sliding_windows",
]
