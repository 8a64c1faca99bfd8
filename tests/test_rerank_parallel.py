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


SETTINGS = {"dtype": "fp32", "batch_size": 8, "doc_length": 40}


@pytest.fixture(scope="module")
def pool(tiny_bert_dir):  # noqa: F811
    """One 2-worker Reranker shared by the tests below (spawning workers costs seconds)."""
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", workers=2,
                                  show_progress=False, **SETTINGS)
    yield rr
    rr.close()


def test_parallel_matches_single_process(tiny_bert_dir, pool) -> None:  # noqa: F811
    from rankstack.rerank.cross_encoder import CrossEncoderScorer

    qs, ps = _pairs()
    plain = CrossEncoderScorer(str(tiny_bert_dir), threads=1, **SETTINGS)
    ref = plain.score_pairs(qs, ps)
    par = pool.scorer
    assert isinstance(par, ParallelScorer)
    assert (par.name, par.family, par.score_kind) == (plain.name, plain.family,
                                                      plain.score_kind)
    c0 = par.counts
    got = par.score_pairs(qs, ps)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # truncation counts are the workers' sums
    c1 = par.counts.since(c0)
    assert plain.counts.passages > 0
    assert (c1.passages, c1.queries, c1.encoded) == (
        plain.counts.passages, plain.counts.queries, plain.counts.encoded)
    # fewer pairs than workers, and no pairs
    np.testing.assert_allclose(par.score_pairs(qs[:1], ps[:1]), ref[:1], atol=1e-6)
    assert par.score_pairs([], []).shape == (0,)


def test_reranker_workers_same_run(tiny_bert_dir, pool) -> None:  # noqa: F811
    from rankstack.rerank.reranker import Reranker

    qs, ps = _pairs(48)
    queries = {f"q{k}": Query(f"q{k}", qs[k]) for k in range(3)}
    docs = {f"d{i}": Doc(f"d{i}", ps[i]) for i in range(len(ps))}
    run = Run(name="bm25")
    for k in range(3):
        run.add(Ranking(f"q{k}", [ScoredDoc(f"d{i}", float(-i)) for i in range(k, 48, 3)],
                        "bm25"))
    one = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder",
                                   show_progress=False, **SETTINGS)
    assert pool.scorer.batch_size == 8
    r1, s1 = one.rerank_with_stats(run, queries, docs, depth=12)
    r2, s2 = pool.rerank_with_stats(run, queries, docs, depth=12)
    one.close()
    assert r1.name == r2.name and list(r1) == list(r2)
    for qid in r1:
        a, b = r1[qid], r2[qid]
        assert a.doc_ids == b.doc_ids and a.scorer == b.scorer
        # workers batch other neighbours together, and a fp32 GEMM row depends on its batch
        # at the 1e-6 level (measured: 1.07e-6 on a 0.36 score on an AMD CPU without AMX)
        np.testing.assert_allclose([d.score for d in a.docs], [d.score for d in b.docs],
                                   rtol=1e-5, atol=1e-6)
    assert s2.passages_truncated == s1.passages_truncated > 0
    assert s2.pairs_scored == s1.pairs_scored == 36


def test_worker_death_raises_and_close_terminates(pool) -> None:
    import signal

    qs, ps = _pairs(10)
    s = pool.scorer
    pids = s.pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    os.kill(pids[1], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match="died"):
        s.score_pairs(qs, ps)
    assert time.monotonic() - t0 < 20
    assert not any(_alive(p) for p in pids)  # a dead worker shuts the whole pool down
    with pytest.raises(RankstackError, match="closed"):
        s.score_pairs(qs, ps)
    s.close()  # idempotent


def test_close_terminates_workers(tiny_bert_dir) -> None:  # noqa: F811
    s = ParallelScorer("cross-encoder", str(tiny_bert_dir), workers=1, settings=SETTINGS)
    pids = s.pids
    assert len(pids) == 1 and all(_alive(p) for p in pids)
    s.close()
    assert not any(_alive(p) for p in pids)


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
