"""ParallelScorer: worker processes give the single-process scores, in input order."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from tiny_models import tiny_bert_dir  # noqa: F401 - fixture

from rankstack.errors import ConfigError, RankstackError
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc
from rankstack.rerank.parallel import ParallelScorer, WorkerError, shard_by_length

pytest.importorskip("torch")

WORDS = ["cats", "eat", "food", "dogs", "sleep", "a", "long", "time", "Paris", "is", "the",
         "capital", "of", "France", "river", "Seine", "python", "code", "music", "guitar",
         "piano", "rain", "today", "Berlin", "weather"]


def _pairs(n: int = 50) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(7)
    qs, ps = [], []
    for i in range(n):
        qs.append(" ".join(rng.choice(WORDS, size=int(rng.integers(1, 6)))))
        # lengths from 1 word to past the 40-token doc budget (some passages truncated)
        ps.append(" ".join(rng.choice(WORDS, size=int(rng.integers(1, 70)))) + f" {i}")
    return qs, ps


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_shard_by_length_balanced_contiguous() -> None:
    lens = [5, 100, 7, 50, 50, 3, 90, 1]
    shards = shard_by_length(lens, 2)
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(lens)))
    order = np.argsort(-np.asarray(lens), kind="stable")
    assert np.concatenate(shards).tolist() == order.tolist()  # contiguous in length order
    totals = [sum(lens[i] for i in s) for s in shards]
    assert max(totals) - min(totals) <= 100
    assert [len(s) for s in shard_by_length([4], 3)] == [1, 0, 0]


def test_parallel_matches_single_process_and_closes(tiny_bert_dir) -> None:  # noqa: F811
    from rankstack.rerank.cross_encoder import CrossEncoderScorer

    qs, ps = _pairs()
    settings = {"batch_size": 8, "dtype": "fp32", "doc_length": 40}
    plain = CrossEncoderScorer(str(tiny_bert_dir), threads=1, **settings)
    ref = plain.score_pairs(qs, ps)
    ps_ = ParallelScorer("cross-encoder", str(tiny_bert_dir), workers=2, settings=settings)
    try:
        assert (ps_.name, ps_.family, ps_.score_kind) == (plain.name, plain.family,
                                                          plain.score_kind)
        got = ps_.score_pairs(qs, ps)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
        # truncation counts are the workers' sums
        assert plain.counts.passages > 0
        assert (ps_.counts.passages, ps_.counts.queries, ps_.counts.encoded) == (
            plain.counts.passages, plain.counts.queries, plain.counts.encoded)
        # fewer pairs than workers, and no pairs
        np.testing.assert_allclose(ps_.score_pairs(qs[:1], ps[:1]), ref[:1], atol=1e-6)
        assert ps_.score_pairs([], []).shape == (0,)
        pids = ps_.pids
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        ps_.close()
    assert not any(_alive(p) for p in pids)
    with pytest.raises(RankstackError, match="closed"):
        ps_.score_pairs(qs, ps)
    ps_.close()  # idempotent


def test_reranker_workers_same_run(tiny_bert_dir) -> None:  # noqa: F811
    from rankstack.rerank.reranker import Reranker

    qs, ps = _pairs(48)
    queries = {f"q{k}": Query(f"q{k}", qs[k]) for k in range(3)}
    docs = {f"d{i}": Doc(f"d{i}", ps[i]) for i in range(len(ps))}
    run = Run(name="bm25")
    for k in range(3):
        run.add(Ranking(f"q{k}", [ScoredDoc(f"d{i}", float(-i)) for i in range(k, 48, 3)],
                        "bm25"))
    kw = {"dtype": "fp32", "batch_size": 4, "doc_length": 40, "show_progress": False,
          "depth": 12}
    one = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", **kw)
    two = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", workers=2, **kw)
    try:
        assert isinstance(two.scorer, ParallelScorer)
        assert two.scorer.batch_size == 4
        r1, s1 = one.rerank_with_stats(run, queries, docs)
        r2, s2 = two.rerank_with_stats(run, queries, docs)
    finally:
        one.close()
        two.close()
    assert r1.name == r2.name and list(r1) == list(r2)
    for qid in r1:
        a, b = r1[qid], r2[qid]
        assert a.doc_ids == b.doc_ids and a.scorer == b.scorer
        np.testing.assert_allclose([d.score for d in a.docs], [d.score for d in b.docs],
                                   atol=1e-6)
    assert s2.passages_truncated == s1.passages_truncated > 0
    assert s2.pairs_scored == s1.pairs_scored == 36


def test_bad_model_fails_fast(tmp_path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match=r"scoring worker \d failed while loading") as ei:
        ParallelScorer("cross-encoder", str(empty), workers=2, load_timeout=60)
    assert time.monotonic() - t0 < 50
    assert ei.value.exc_type
    with pytest.raises(ConfigError, match="does not exist"):  # checked before spawning
        ParallelScorer("cross-encoder", str(tmp_path / "missing/"), workers=2)
    with pytest.raises(ConfigError, match="workers"):
        ParallelScorer("cross-encoder", str(empty), workers=0)


def test_worker_death_raises(tiny_bert_dir) -> None:  # noqa: F811
    import signal

    qs, ps = _pairs(10)
    s = ParallelScorer("cross-encoder", str(tiny_bert_dir), workers=2,
                       settings={"dtype": "fp32"})
    try:
        os.kill(s.pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerError, match="died"):
            s.score_pairs(qs, ps)
        assert time.monotonic() - t0 < 20
    finally:
        s.close()
