"""Teacher generation: pooling several runs, ranking the pool, resuming after a kill."""

from __future__ import annotations

import json

import pytest

from rankstack.distill.teach import pool_candidates, subsample_pool, teach
from rankstack.errors import ConfigError, InputError
from rankstack.io import read_run
from rankstack.records import Doc, Query, Run


def test_pool_is_the_deduplicated_union_of_each_runs_top_depth():
    a = Run.from_dict({"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d9": 1.0}}, name="a")
    b = Run.from_dict({"q1": {"d3": 9.0, "d4": 8.0, "d5": 7.0}}, name="b")
    pooled, stats = pool_candidates([a, b], depth=2)
    assert set(pooled["q1"].doc_ids) == {"d1", "d2", "d3", "d4"}  # d5 is below depth 2 in b
    # score = -best rank: d1 and d3 both reached rank 1; tie broken by doc id
    assert pooled["q1"].doc_ids == ["d1", "d3", "d2", "d4"]
    assert stats.contributed == {"a": 3, "b": 2}  # a: d1 d2 (q1) + d9 (q2); b: d3 d4
    assert stats.pooled_pairs == 5 and stats.queries == 2


def test_pool_counts_queries_without_candidates_and_missing_docs():
    a = Run.from_dict({"q1": {"d1": 1.0, "dX": 0.5}}, name="a")
    queries = {"q1": Query("q1", "x"), "q2": Query("q2", "y")}
    docs = {"d1": Doc("d1", "t")}
    with pytest.raises(InputError, match="dX"):
        pool_candidates([a], 10, queries, docs)
    pooled, stats = pool_candidates([a], 10, queries, docs, on_missing_doc="skip")
    assert pooled["q1"].doc_ids == ["d1"]
    assert stats.docs_missing_from_corpus == 1
    assert stats.queries_without_candidates == ["q2"]
    with pytest.raises(ConfigError):
        pool_candidates([], 10)


def test_subsample_pool_keeps_the_head_and_a_seeded_sample_of_the_tail():
    a = Run.from_dict({"q1": {f"d{i:02d}": 100.0 - i for i in range(30)},
                       "q2": {"e1": 2.0, "e2": 1.0}}, name="a")
    pooled, _ = pool_candidates([a], depth=30)
    sub = subsample_pool(pooled, top=5, extra=4, seed=7)
    ids = sub["q1"].doc_ids
    assert ids[:5] == pooled["q1"].doc_ids[:5]  # the head, whole and in pool order
    tail = ids[5:]
    assert len(tail) == 4 and set(tail) <= set(pooled["q1"].doc_ids[5:])
    assert tail == sorted(tail, key=pooled["q1"].doc_ids.index)  # pool order kept
    assert sub["q2"].doc_ids == ["e1", "e2"]  # fewer than the head: kept whole
    # a query's draw depends on the seed and its id only, not on the other queries
    alone = subsample_pool(Run({"q1": pooled["q1"]}, "x"), top=5, extra=4, seed=7)
    assert alone["q1"].doc_ids == ids
    draws = {tuple(subsample_pool(pooled, 5, 4, seed=s)["q1"].doc_ids[5:]) for s in range(6)}
    assert len(draws) > 1
    assert subsample_pool(pooled, 5)["q1"].doc_ids == pooled["q1"].doc_ids[:5]
    for bad in ({"top": 0}, {"top": 2, "extra": -1}, {"top": "3"}, {"top": 2, "seed": 1.5}):
        with pytest.raises(ConfigError):
            subsample_pool(pooled, **bad)


class CountingTeacher:
    """Wraps a real Reranker; counts the queries it was asked to rank; may die mid-run."""

    def __init__(self, reranker, die_after: int | None = None) -> None:
        self.reranker, self.die_after, self.ranked = reranker, die_after, []

    def rerank(self, run, queries, docs):
        if self.die_after is not None and len(self.ranked) >= self.die_after:
            raise KeyboardInterrupt("simulated kill")
        self.ranked.extend(run)
        return self.reranker.rerank(run, queries, docs)


@pytest.fixture(scope="module")
def tiny_teacher(tiny_bert_dir):
    from rankstack.rerank.reranker import Reranker

    return Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", batch_size=8,
                                    threads=1)


def toy(n=7):
    queries = {f"q{i}": Query(f"q{i}", f"query number {i} about topic {i}") for i in range(n)}
    docs = {f"d{j}": Doc(f"d{j}", f"passage {j} mentions topic {j % n} and more") for j in range(20)}
    run = Run.from_dict({q: {f"d{j}": float(-j) for j in range(i, i + 6)}
                         for i, q in enumerate(queries)}, name="bm25")
    return queries, docs, run


def test_teach_resumes_after_a_kill_without_redoing_or_losing_queries(tmp_path, tiny_teacher):
    queries, docs, run = toy()
    out = tmp_path / "teacher.txt"
    dying = CountingTeacher(tiny_teacher, die_after=4)
    with pytest.raises(KeyboardInterrupt):
        teach(dying, "tiny", run, queries, docs, out, chunk_size=2, show_progress=False)
    assert not out.exists()
    journal = tmp_path / "teacher.txt.journal.jsonl"
    assert len(journal.read_text().splitlines()) == 1 + 4  # header + 2 chunks of 2 queries
    # a torn last line (kill during a write) is discarded and that query redone
    with open(journal, "a") as fh:
        fh.write('{"q": "q4", "s": "x", "d": [["d4", 0.')
    again = CountingTeacher(tiny_teacher)
    res = teach(again, "tiny", run, queries, docs, out, chunk_size=2, show_progress=False)
    assert sorted(again.ranked) == ["q4", "q5", "q6"]  # only the unfinished queries
    assert res.resumed_queries == 4 and res.scored_queries == 3
    final = read_run(out)
    assert sorted(final) == sorted(queries)
    assert all(sorted(final[q].doc_ids) == sorted(run[q].doc_ids) for q in run)
    # same scores as an uninterrupted run
    ref = teach(CountingTeacher(tiny_teacher), "tiny", run, queries, docs, tmp_path / "ref.txt",
                show_progress=False)
    for q in run:
        assert final[q].doc_ids == ref.run[q].doc_ids
    prov = json.loads((tmp_path / "teacher.txt.provenance.json").read_text())
    assert prov["teacher"] == "tiny" and prov["pairs"] == 42 and len(prov["config_hash"]) == 16
    assert not journal.exists()


def test_teach_refuses_a_journal_of_another_config(tmp_path, tiny_teacher):
    queries, docs, run = toy(3)
    out = tmp_path / "t.txt"
    with pytest.raises(KeyboardInterrupt):
        teach(CountingTeacher(tiny_teacher, die_after=1), "tiny", run, queries, docs, out,
              config={"depth": 10}, chunk_size=1, show_progress=False)
    with pytest.raises(ConfigError, match="journal of another job"):
        teach(CountingTeacher(tiny_teacher), "tiny", run, queries, docs, out,
              config={"depth": 20}, show_progress=False)


def test_teach_cli_pools_two_runs_and_writes_provenance(tmp_path, tiny_bert_dir):
    from rankstack.cli import main
    from rankstack.io import write_corpus, write_run, write_topics

    queries, docs, run = toy(4)
    other = Run.from_dict({q: {f"d{(j + 7) % 20}": 1.0 / (j + 1) for j in range(3)} for q in queries},
                          name="dense")
    write_topics(queries, tmp_path / "topics.tsv")
    write_corpus(docs.values(), tmp_path / "corpus.jsonl")
    write_run(run, tmp_path / "a.txt")
    write_run(other, tmp_path / "b.txt")
    rc = main(["teach", "--runs", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"),
               "--topics", str(tmp_path / "topics.tsv"), "--corpus", str(tmp_path / "corpus.jsonl"),
               "--depth", "5", "--model", str(tiny_bert_dir), "--family", "cross-encoder",
               "--out", str(tmp_path / "teacher.txt")])
    assert rc == 0
    teacher = read_run(tmp_path / "teacher.txt")
    for q in queries:
        expected = set(run[q].doc_ids[:5]) | set(other[q].doc_ids)
        assert set(teacher[q].doc_ids) == expected
    prov = json.loads((tmp_path / "teacher.txt.provenance.json").read_text())
    assert prov["config"]["runs"] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]

    # a deep pool: each query's first 2 pooled candidates and 2 of the rest, recorded
    rc = main(["teach", "--runs", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"),
               "--topics", str(tmp_path / "topics.tsv"), "--corpus", str(tmp_path / "corpus.jsonl"),
               "--depth", "5", "--pool-top", "2", "--pool-random", "2", "--model",
               str(tiny_bert_dir), "--family", "cross-encoder", "--no-progress",
               "--out", str(tmp_path / "deep.txt")])
    assert rc == 0
    deep = read_run(tmp_path / "deep.txt")
    for q in queries:
        assert len(deep[q]) == 4 and set(deep[q].doc_ids) <= set(teacher[q].doc_ids)
    prov = json.loads((tmp_path / "deep.txt.provenance.json").read_text())
    assert prov["config"]["pool"] == {"top": 2, "random": 2}
    # a sample without a head to keep: exit 2, before any model is loaded
    assert main(["teach", "--runs", str(tmp_path / "a.txt"), "--topics", str(tmp_path / "topics.tsv"),
                 "--corpus", str(tmp_path / "corpus.jsonl"), "--pool-random", "2",
                 "--model", str(tiny_bert_dir), "--out", str(tmp_path / "bad.txt")]) == 2
    assert not (tmp_path / "bad.txt").exists()
