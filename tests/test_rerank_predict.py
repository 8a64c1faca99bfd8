"""Sharded re-ranking on Lightning ranks: 2 CPU ranks (gloo/DDP) give the 1-rank run; resume
after a rank is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_bert_dir  # noqa: F401 - fixture

from rankstack.errors import ConfigError, InputError
from rankstack.io import read_run, write_corpus, write_run, write_topics
from rankstack.records import Doc, Query, Run
from rankstack.rerank.predict import (
    DeviceSettings,
    Ranks,
    ShardedJournal,
    rerank_sharded,
    shard_by_cost,
)

pytest.importorskip("torch")

WORDS = ["cats", "eat", "food", "dogs", "sleep", "a", "long", "time", "Paris", "is", "the",
         "capital", "of", "France", "river", "Seine", "python", "code", "music", "guitar"]
SETTINGS = {"dtype": "fp32", "batch_size": 8, "doc_length": 40, "threads": 1}


def toy(n_queries: int = 12, per_query: int = 9) -> tuple[dict, dict, Run]:
    rng = np.random.default_rng(3)
    queries = {f"q{i}": Query(f"q{i}", " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))))
               for i in range(n_queries)}
    docs = {f"d{j}": Doc(f"d{j}", " ".join(rng.choice(WORDS, size=int(rng.integers(2, 60))))
                         + f" passage {j}") for j in range(60)}
    run = Run.from_dict({q: {f"d{(i * 5 + k) % 60}": float(-k) for k in range(per_query)}
                         for i, q in enumerate(queries)}, name="bm25")
    return queries, docs, run


def assert_same_run(a: Run, b: Run, atol: float = 1e-5) -> None:
    assert list(a) == list(b)
    for q in a:
        assert a[q].doc_ids == b[q].doc_ids, q
        np.testing.assert_allclose([d.score for d in a[q].docs], [d.score for d in b[q].docs],
                                   atol=atol)


def test_shard_by_cost_balanced_deterministic() -> None:
    costs = [5, 100, 7, 50, 50, 3, 90, 1]
    shards = shard_by_cost(costs, 2)
    assert sorted(i for s in shards for i in s) == list(range(len(costs)))
    assert all(s == sorted(s) for s in shards)  # run order kept inside a shard
    totals = [sum(costs[i] for i in s) for s in shards]
    assert max(totals) - min(totals) <= max(costs)
    assert shard_by_cost(costs, 2) == shards
    assert shard_by_cost([4], 3) == [[0], [], []]
    with pytest.raises(ConfigError):
        shard_by_cost(costs, 0)


def test_device_settings_are_fits() -> None:
    assert DeviceSettings().single_process
    assert not DeviceSettings(devices="2").single_process
    assert DeviceSettings.from_mapping({"devices": "2", "strategy": None}).lightning() == {
        "accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "auto"}
    with pytest.raises(ConfigError, match="num_nodes"):
        DeviceSettings(num_nodes=0).lightning()
    with pytest.raises(ConfigError, match="unknown device setting"):
        DeviceSettings.from_mapping({"gpus": 2})


@pytest.fixture(scope="module")
def reranker(tiny_bert_dir):  # noqa: F811
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", depth=6,
                                  show_progress=False, **SETTINGS)
    yield rr
    rr.close()


def test_one_rank_is_the_reranker_and_resumes(reranker, tmp_path) -> None:
    queries, docs, run = toy()
    ref = reranker.rerank(run, queries, docs)
    jpath = tmp_path / "out.journal.jsonl"
    res = rerank_sharded(reranker, run, queries, docs, journal=jpath, chunk_queries=5,
                         show_progress=False)
    assert res.run.name == ref.name
    assert_same_run(res.run, ref, atol=1e-6)
    assert res.pairs_scored == 12 * 6 and res.scored_queries == 12 and res.resumed_queries == 0
    assert res.report.kept_below_depth == 12 * 3  # the re-ranker's tail policy, summed
    assert res.report.pairs_scored == 12 * 6
    # journal kept until removed: a second call resumes everything, scores nothing
    again = rerank_sharded(reranker, run, queries, docs, journal=jpath, show_progress=False)
    assert again.resumed_queries == 12 and again.pairs_scored == 0
    assert_same_run(again.run, ref, atol=1e-6)
    res.remove_journals()
    assert not jpath.exists()
    # a journal of another job is refused
    with ShardedJournal(jpath, {"job": "other"}).journal(1).writer() as w:
        w.write([])
    with pytest.raises(ConfigError, match="another job"):
        rerank_sharded(reranker, run, queries, docs, journal=jpath, show_progress=False)


def test_bad_input_found_before_scoring(reranker, tmp_path) -> None:
    queries, docs, run = toy(3)
    del docs[run["q2"].doc_ids[0]]
    with pytest.raises(InputError, match="not in the corpus"):
        rerank_sharded(reranker, run, queries, docs, journal=tmp_path / "j.jsonl",
                       ranks=Ranks(), show_progress=False)
    assert not (tmp_path / "j.jsonl").exists()


DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from rankstack.io import read_corpus, read_run, read_topics, write_run
    from rankstack.rerank.predict import launch, rerank_sharded
    from rankstack.rerank.reranker import Reranker

    model, data, out, devices = sys.argv[1:5]
    ranks = launch({"devices": int(devices), "strategy": "ddp" if int(devices) > 1 else "auto"})
    rr = Reranker.from_pretrained(model, family="cross-encoder", depth=6, show_progress=False,
                                  **json.loads(os.environ["SETTINGS"]))

    class Gated:
        # a real re-ranker whose rank GATE_RANK stops for good after GATE_AFTER groups
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.name, self.depth = inner.name, inner.depth

        def rerank(self, run, queries, docs):
            gate = os.environ.get("GATE_AFTER")
            if (gate is not None and ranks.rank == int(os.environ["GATE_RANK"])
                    and self.calls >= int(gate)):
                with open(os.environ["GATE_PID"], "w") as fh:
                    fh.write(str(os.getpid()))
                time.sleep(600)
            self.calls += 1
            return self.inner.rerank(run, queries, docs)

    queries = read_topics(os.path.join(data, "topics.tsv"))
    docs = read_corpus(os.path.join(data, "corpus.jsonl"))
    run = read_run(os.path.join(data, "run.txt"))
    res = rerank_sharded(Gated(rr), run, queries, docs, journal=out + ".journal.jsonl",
                         ranks=ranks, chunk_queries=2, show_progress=False)
    if ranks.is_zero:
        write_run(res.run, out)
        with open(out + ".stats.json", "w") as fh:
            json.dump(res.to_dict(), fh)
        res.remove_journals()
""")


def _env(**extra: str) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "SETTINGS": json.dumps(SETTINGS),
            "MASTER_PORT": str(29700 + os.getpid() % 500), **extra}


@pytest.fixture()
def job(tmp_path, tiny_bert_dir):  # noqa: F811
    queries, docs, run = toy()
    data = tmp_path / "data"
    data.mkdir()
    write_topics(queries, data / "topics.tsv")
    write_corpus(docs.values(), data / "corpus.jsonl")
    write_run(run, data / "run.txt")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    def start(out: Path, devices: int, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(driver), str(tiny_bert_dir), str(data),
                                 str(out), str(devices)], env=_env(**env), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out[-4000:]
        return out

    return start, finish


@pytest.mark.slow  # three 2-process launches (~30 s each on a busy 2-core machine)
def test_two_ranks_write_the_one_rank_run_and_resume_after_a_rank_is_killed(job, tmp_path):
    start, finish = job
    finish(start(tmp_path / "one.txt", 1))
    one = read_run(tmp_path / "one.txt")
    finish(start(tmp_path / "two.txt", 2))
    two = read_run(tmp_path / "two.txt")
    assert_same_run(two, one, atol=0)  # same groups, same batches: the same bits
    stats = json.loads((tmp_path / "two.txt.stats.json").read_text())
    assert stats["world_size"] == 2 and stats["pairs_scored"] == 12 * 6
    assert [r["queries"] for r in stats["per_rank"]] == [6, 6]  # length-balanced, not empty

    # rank 1 stops for good after 1 group (2 queries); kill it: the launcher ends rank 0 too
    pid_file = tmp_path / "rank1.pid"
    out = tmp_path / "killed.txt"
    proc = start(out, 2, GATE_AFTER="1", GATE_RANK="1", GATE_PID=str(pid_file))
    deadline = time.monotonic() + 240
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "rank 1 never reached the gate"
        time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not out.exists()
    rank1 = tmp_path / "killed.txt.journal.rank1.jsonl"
    assert len(rank1.read_text().splitlines()) == 1 + 2  # header + its one finished group
    journaled = sum(len(p.read_text().splitlines()) - 1
                    for p in tmp_path.glob("killed.txt.journal*.jsonl"))
    assert 2 <= journaled < 12
    # the same command again: resumes the journaled queries, re-ranks the rest
    finish(start(out, 2))
    assert_same_run(read_run(out), one, atol=0)
    stats = json.loads((tmp_path / "killed.txt.stats.json").read_text())
    assert stats["resumed_queries"] == journaled
    assert stats["scored_queries"] == 12 - journaled
    assert not list(tmp_path.glob("killed.txt.journal*"))


@pytest.mark.slow  # two 2-process launches of the real commands
def test_rerank_and_teach_commands_with_two_devices_match_one(tmp_path, tiny_bert_dir):  # noqa: F811
    from rankstack.cli import main

    queries, docs, run = toy(10)
    other = Run.from_dict({q: {f"d{(i * 7 + k) % 60}": 1.0 / (k + 1) for k in range(5)}
                           for i, q in enumerate(queries)}, name="dense")
    write_topics(queries, tmp_path / "topics.tsv")
    write_corpus(docs.values(), tmp_path / "corpus.jsonl")
    write_run(run, tmp_path / "a.txt")
    write_run(other, tmp_path / "b.txt")
    files = ["--topics", str(tmp_path / "topics.tsv"), "--corpus", str(tmp_path / "corpus.jsonl")]
    model = ["--model", str(tiny_bert_dir), "--family", "cross-encoder", "--threads", "1",
             "--batch-size", "8", "--no-progress"]
    rerank = ["rerank", "--run", str(tmp_path / "a.txt"), *files, *model, "--depth", "6",
              "--dtype", "bf16"]
    teach = ["teach", "--runs", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), *files,
             *model, "--depth", "5", "--chunk-size", "2"]
    assert main([*rerank, "--out", str(tmp_path / "r1.txt")]) == 0
    assert main([*teach, "--out", str(tmp_path / "t1.txt")]) == 0
    for cmd, out in ((rerank, "r2.txt"), (teach, "t2.txt")):
        proc = subprocess.run([sys.executable, "-m", "rankstack.cli", *cmd, "--out",
                               str(tmp_path / out), "--devices", "2", "--strategy", "ddp"],
                              env=_env(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # bf16 scores too: the same groups give the same batches on either number of ranks
    assert_same_run(read_run(tmp_path / "r2.txt"), read_run(tmp_path / "r1.txt"), atol=0)
    assert_same_run(read_run(tmp_path / "t2.txt"), read_run(tmp_path / "t1.txt"), atol=0)
    report = json.loads((tmp_path / "r2.txt.report.json").read_text())
    assert report["settings"]["ranks"] == 2 and report["pairs_scored"] == 10 * 6
    prov = json.loads((tmp_path / "t2.txt.provenance.json").read_text())
    assert prov["ranks"] == 2 and prov["queries"] == 10
    assert not list(tmp_path.glob("*.journal*"))
