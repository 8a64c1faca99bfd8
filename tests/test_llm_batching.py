"""Batched LLM calls give the one-at-a-time outputs: HF left-padded batches, and the sliding
window scheduler that ranks the current window of many queries in one call."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tiny_chat_llama  # noqa: F401 - fixture

from rankstack.llm.sliding_window import SlidingWindowReranker

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hf(tiny_chat_llama):  # noqa: F811
    from rankstack.llm.hf import HFBackend

    return HFBackend(str(tiny_chat_llama), threads=1, batch_size=3)


def _prompts(n: int = 8) -> list:
    words = ["cats", "eat", "food", "dogs", "sleep", "a", "long", "time", "Paris", "is", "the", "capital", "of", "France"]
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 40))))
        out.append([{"role": "system", "content": "Rank the passages."},
                    {"role": "user", "content": f"[{i}] {text}"}] if i % 2 else text)
    return out


def test_hf_generate_batch_is_one_at_a_time(hf) -> None:
    prompts = _prompts()
    caps = [6 + 2 * i for i in range(len(prompts))]
    one = [hf.generate(p, max_tokens=c, stop=["\n\n"]) for p, c in zip(prompts, caps, strict=True)]
    many = hf.generate_batch(prompts, max_tokens=caps, stop=["\n\n"])
    assert [g.text for g in many] == [g.text for g in one]
    assert [(g.prompt_tokens, g.completion_tokens) for g in many] == [
        (g.prompt_tokens, g.completion_tokens) for g in one]
    assert all(g.completion_tokens <= c for g, c in zip(many, caps, strict=True))
    assert hf.generate_batch([], max_tokens=4) == []
    with pytest.raises(ValueError, match="max_tokens"):
        hf.generate_batch(prompts, max_tokens=[1, 2])


def test_hf_next_token_logprobs_batch_is_one_at_a_time(hf) -> None:
    prompts = _prompts(7)
    one = [hf.next_token_logprobs(p, ["Yes", "No"]) for p in prompts]
    many = hf.next_token_logprobs_batch(prompts, ["Yes", "No"])
    for a, b in zip(one, many, strict=True):
        assert a.prompt_tokens == b.prompt_tokens
        for c in ("Yes", "No"):
            assert b.logprobs[c] == pytest.approx(a.logprobs[c], abs=1e-5)


def test_hf_batch_size_checked(tiny_chat_llama) -> None:  # noqa: F811
    from rankstack.errors import ConfigError
    from rankstack.llm.hf import HFBackend

    with pytest.raises(ConfigError, match="batch_size"):
        HFBackend(str(tiny_chat_llama), batch_size=0)


def _window_ranker(query: str, passages) -> list[int]:
    """A pure, query-dependent window ranker (sorts by a hash of query + passage)."""
    import hashlib

    keys = [hashlib.md5(f"{query}|{p}".encode()).hexdigest() for p in passages]
    order = sorted(range(len(passages)), key=lambda i: keys[i])
    return order + [order[0]] if len(order) > 2 else order  # a duplicate to repair


@pytest.mark.parametrize("passes", [1, 2])
def test_rerank_many_equals_rerank_each_list(passes: int) -> None:
    sw = SlidingWindowReranker(_window_ranker, window=4, stride=2, passes=passes)
    lists = [(f"q{k}", [f"p{k}-{i}" for i in range(n)]) for k, n in enumerate([0, 1, 3, 7, 10])]
    calls: list[int] = []

    def rank_windows(batch):
        calls.append(len(batch))
        return [_window_ranker(q, ps) for q, ps in batch]

    finished: list[int] = []
    got = sw.rerank_many(lists, rank_windows, on_done=finished.append)
    want = [sw.rerank(q, items) for q, items in lists]
    assert [o for o, _ in got] == [o for o, _ in want]
    assert [s.to_dict() for _, s in got] == [s.to_dict() for _, s in want]
    # one call per step, each with the current window of every list still sliding
    n_windows = [0, 1, 1, 3, 4]
    assert len(calls) == passes * max(n_windows)
    assert sum(calls) == passes * sum(n_windows)
    assert sorted(finished) == list(range(len(lists)))
    # default: the one-at-a-time window ranker
    assert [o for o, _ in sw.rerank_many(lists)] == [o for o, _ in want]


def _toy_run(n_queries: int = 5, per_query: int = 9):
    from rankstack.records import Doc, Query, Run

    words = ["cats", "eat", "food", "dogs", "sleep", "a", "long", "time", "Paris", "is", "the",
             "capital", "of", "France", "river", "Seine", "music", "guitar", "rain", "today"]
    rng = np.random.default_rng(5)
    queries = {f"q{i}": Query(f"q{i}", " ".join(rng.choice(words, size=3))) for i in range(n_queries)}
    docs = {f"d{j}": Doc(f"d{j}", " ".join(rng.choice(words, size=int(rng.integers(3, 14)))))
            for j in range(30)}
    # queries with different candidate counts slide different numbers of windows
    run = Run.from_dict({q: {f"d{(3 * i + k) % 30}": float(-k) for k in range(per_query - i)}
                         for i, q in enumerate(queries)}, name="bm25")
    return run, queries, docs


@pytest.mark.parametrize("family", ["llm-listwise", "llm-pointwise"])
def test_batched_llm_reranking_is_the_one_at_a_time_run(tiny_chat_llama, family) -> None:  # noqa: F811
    from rankstack.rerank.spec import load_reranker

    run, queries, docs = _toy_run()
    settings = {"max_passage_tokens": 10, "show_progress": False}
    if family == "llm-listwise":
        settings.update(window=4, stride=2, passes=2)
    out = {}
    for bs in (1, 4):
        rr = load_reranker({"family": family, "backend": "hf", "model": str(tiny_chat_llama),
                            "settings": {**settings, "batch_size": bs, "threads": 1}})
        assert rr.backend.batch_size == bs
        out[bs] = (rr.rerank(run, queries, docs, depth=8), rr.last_report)
        rr.close()
    (one, rep1), (many, rep4) = out[1], out[4]
    assert list(one) == list(many)
    for q in one:
        assert one[q].doc_ids == many[q].doc_ids, q  # identical permutations / orders
        np.testing.assert_allclose([d.score for d in many[q].docs],
                                   [d.score for d in one[q].docs], atol=1e-4)
    assert rep4.total.calls == rep1.total.calls  # same windows (or pairs), batched
    assert rep4.total.prompt_tokens == rep1.total.prompt_tokens
    assert rep4.total.completion_tokens == rep1.total.completion_tokens
    if family == "llm-listwise":
        assert rep4.repairs == rep1.repairs
