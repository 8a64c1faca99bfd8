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


# ---------------------------------------------------------------- real tiny HF model
# A 2-layer random Llama (tests/tiny_models.py) with a chat template added: its output is
# noise, so these tests check mechanics (prompts, parsing, repair counts, the final Run),
# never ranking quality.

def rerank_and_report(rr, *args, **kw):
    """The re-ranked run and the re-ranker's report of that call (``last_report``)."""
    out = rr.rerank(*args, **kw)
    return out, rr.last_report


@pytest.fixture(scope="module")
def hf_backend(tiny_chat_llama):
    import torch

    from rankstack.llm.hf import HFBackend

    torch.set_num_threads(1)
    return HFBackend(str(tiny_chat_llama))


@pytest.fixture(scope="module")
def dl19_small():
    """Two real DL19 queries with their BM25 top-12 passages."""
    from rankstack.datasets import load_dataset

    ds = load_dataset("dl19")
    qids = list(ds.run)[:2]
    from rankstack.records import Run

    run = Run({q: ds.run[q].top(12) for q in qids}, name="bm25")
    return ds, run


@pytest.mark.parametrize("template", ["rankzephyr", "rankgpt"])
def test_hf_listwise_mechanics(hf_backend, dl19_small, template):
    from rankstack.llm import ListwiseLLMReranker

    ds, run = dl19_small
    rr = ListwiseLLMReranker(hf_backend, template, window=6, stride=3, max_passage_tokens=16)
    out, report = rerank_and_report(rr, run, ds.queries, ds.docs, depth=10)
    assert list(out) == list(run)
    for q in run:
        # exactly the input candidates, re-ranked head then the untouched tail
        assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)
        assert out[q].doc_ids[10:] == run[q].doc_ids[10:]
        assert out[q].scorer == rr.name
    windows_per_query = len(sliding_windows(10, 6, 3))
    assert report.repairs["windows"] == 2 * windows_per_query
    assert report.total.calls == 2 * windows_per_query and report.total.cache_hits == 0
    assert report.total.prompt_tokens > 0 and report.total.completion_tokens > 0
    # a random model's output is noise: whatever it was, each repair kind is counted
    r = report.repairs
    assert r["repaired_windows"] <= r["windows"]
    assert set(r) == {"windows", "repaired_windows", "duplicates", "out_of_range", "missing",
                      "unparseable"}
    assert report.notes["tail_docs"] == 4
    assert set(report.per_query) == set(run)


def test_passages_are_truncated_by_backend_tokens(hf_backend):
    text = "what do cats eat " * 40
    cut = hf_backend.truncate(text, 10)
    assert hf_backend.count_tokens(cut) <= 10 < hf_backend.count_tokens(text)
    assert hf_backend.truncate("cats", 10) == "cats"


def test_template_errors_name_file_and_field(tmp_path):
    from rankstack.llm import load_template

    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\nversion: one\nkind: listwise\nmessages: []\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: field 'version'"):
        load_template(bad)
    bad.write_text("name: x\nversion: 1\nkind: listwise\nmessages:\n"
                   "  - {role: user, content: 'rank {nope}'}\n")
    with pytest.raises(ConfigError, match="placeholder"):
        load_template(bad)
    with pytest.raises(ConfigError, match="unknown prompt template"):
        load_template("no-such-template")
    t = load_template("rankzephyr")
    assert t.id == "rankzephyr@v2" and t.kind == "listwise"
