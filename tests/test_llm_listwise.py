"""Listwise LLM re-ranking: window arithmetic, permutation repair, real tiny models."""

from __future__ import annotations

import pytest

from rankstack.errors import ConfigError
from rankstack.llm.sliding_window import (
    RepairStats,
    SlidingWindowReranker,
    extract_ids,
    parse_permutation,
    sliding_windows,
)

# ---------------------------------------------------------------- window arithmetic


def test_sliding_windows_100_candidates():
    assert sliding_windows(100, 20, 10) == [
        (80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30), (0, 20)
    ]


def test_sliding_windows_edges():
    assert sliding_windows(0) == []
    assert sliding_windows(7, 20, 10) == [(0, 7)]
    assert sliding_windows(20, 20, 10) == [(0, 20)]
    # the top is always covered even when n - window is not a multiple of stride
    assert sliding_windows(25, 20, 10) == [(5, 25), (0, 15)]
    assert sliding_windows(10, 4, 4) == [(6, 10), (2, 6), (0, 2)]
    for bad in ({"window": 0}, {"stride": 0}, {"window": 5, "stride": 6}):
        with pytest.raises(ConfigError):
            sliding_windows(10, **{"window": 5, "stride": 2, **bad})


# ---------------------------------------------------------------- parsing and repair


def test_parse_permutation_clean_and_repairs():
    perm, s = parse_permutation("[3] > [1] > [2]", 3)
    assert perm == [2, 0, 1] and s.clean and s.windows == 1
    perm, s = parse_permutation("[2] > [2] > [7] > [1]", 4)
    assert perm == [1, 0, 2, 3]
    assert (s.duplicates, s.out_of_range, s.missing, s.unparseable) == (1, 1, 2, 0)
    perm, s = parse_permutation("I think passage two is best", 3)
    assert perm == [0, 1, 2] and s.unparseable == 1 and s.missing == 0
    # bare numbers are used only when no bracketed id exists
    assert extract_ids("2 > 1 > 3") == [2, 1, 3]
    assert extract_ids("[2] (from 2019) > [1]") == [2, 1]
    total = RepairStats()
    total += s
    total += s
    assert total.unparseable == 2 and total.windows == 2


# ---------------------------------------------------------------- the window algorithm
# A scripted ranker stands in for the model here only: these tests check the pure window
# logic against known answers. Items are integers = true relevance (higher is better).


def _script(kind: str):
    def rank_window(query: str, items):
        best_first = sorted(range(len(items)), key=lambda i: -items[i])
        ids = [i + 1 for i in best_first]
        if kind == "perfect":
            text = " > ".join(f"[{i}]" for i in ids)
        elif kind == "reversed":
            text = " > ".join(f"[{i}]" for i in reversed(ids))
        elif kind == "duplicated":
            text = " > ".join(f"[{i}]" for i in [ids[0], ids[0], *ids[1:], ids[1]])
        elif kind == "truncated":
            text = " > ".join(f"[{i}]" for i in ids[:3])
        elif kind == "garbage":
            text = "As an AI model I cannot rank passages. ###"
        else:
            raise AssertionError(kind)
        return [i - 1 for i in extract_ids(text)]  # raw 0-based ids; the reranker repairs
    return rank_window


def _run(kind: str, items, **kw):
    rr = SlidingWindowReranker(_script(kind), **kw)
    return rr.rerank("q", items)


def test_perfect_permutation_brings_top_items_to_the_top():
    items = list(range(100))  # worst first: the best item is at the very bottom
    order, stats = _run("perfect", items, window=20, stride=10)
    assert sorted(order) == list(range(100))
    # one pass of a perfect window ranker bubbles the top `stride` items to the top, in order
    assert [items[i] for i in order[:10]] == list(range(99, 89, -1))
    assert stats.windows == 9 and stats.clean


def test_several_passes_sort_fully():
    items = [(7 * i) % 30 for i in range(30)]
    order, _ = _run("perfect", items, window=6, stride=3, passes=12)
    assert [items[i] for i in order] == sorted(items, reverse=True)


def test_reversed_permutation():
    items = [5, 4, 3, 2, 1, 0]
    order, stats = _run("reversed", items, window=6, stride=3)
    assert [items[i] for i in order] == [0, 1, 2, 3, 4, 5]
    assert stats.clean


def test_duplicated_permutation_is_repaired_and_counted():
    items = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    order, stats = _run("duplicated", items, window=4, stride=2)
    assert sorted(order) == list(range(10))
    assert stats.duplicates == 2 * stats.windows and stats.missing == 0
    assert [items[i] for i in order[:2]] == [9, 8]


def test_truncated_permutation_appends_missing_in_previous_order():
    items = [0, 1, 2, 3, 4, 5]
    order, stats = _run("truncated", items, window=6, stride=3)
    # the three named first, then the rest in their previous order
    assert [items[i] for i in order] == [5, 4, 3, 0, 1, 2]
    assert stats.missing == 3 and stats.repaired_windows == 1


def test_garbage_output_keeps_order_and_never_crashes():
    items = [3, 1, 4, 1, 5, 9, 2, 6]
    order, stats = _run("garbage", items, window=4, stride=2, passes=2)
    assert order == list(range(8))
    assert stats.unparseable == stats.windows == 2 * len(sliding_windows(8, 4, 2))


def test_broken_raw_ids_from_a_window_ranker_are_repaired():
    # a rank_window callable returning 0-based ids directly (no text), with defects
    rr = SlidingWindowReranker(lambda q, items: [1, 1, 42], window=3, stride=1)
    order, stats = rr.rerank("q", ["a", "b", "c"])
    assert order == [1, 0, 2]
    assert (stats.duplicates, stats.out_of_range, stats.missing) == (1, 1, 2)
