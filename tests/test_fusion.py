"""Fusion: hand-computed RRF / CombSUM / CombMNZ, policies, CLI, and real DL19 runs."""

from __future__ import annotations

import math

import pytest

from rankstack.errors import ConfigError, RankstackError
from rankstack.io import read_run, write_run
from rankstack.records import Run
from rankstack.retrieve.fusion import FusionStats, fuse


def _run(d: dict[str, dict[str, float]], name: str) -> Run:
    return Run.from_dict(d, name=name, scorer=name)


A = _run({"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}, "A")
B = _run({"q1": {"b": 10.0, "d": 5.0, "a": 0.0}}, "B")


def test_rrf_hand_computed():
    fused = fuse([A, B], method="rrf", k=60)
    s = fused["q1"].scores()
    # A: a=1, b=2, c=3; B: b=1, d=2, a=3
    assert s["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert s["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert s["c"] == pytest.approx(1 / 63)
    assert s["d"] == pytest.approx(1 / 62)
    assert fused["q1"].doc_ids == ["b", "a", "d", "c"]
    assert fused["q1"].scorer == "rrf(k=60)"


def test_rrf_tie_break_by_doc_id():
    # x and y swap places between runs -> equal RRF scores -> doc id ascending
    r1 = _run({"q": {"y": 2.0, "x": 1.0}}, "r1")
    r2 = _run({"q": {"x": 2.0, "y": 1.0}}, "r2")
    fused = fuse([r1, r2], method="rrf", k=1)
    assert fused["q"].doc_ids == ["x", "y"]
    assert fused["q"].docs[0].score == fused["q"].docs[1].score == pytest.approx(1 / 2 + 1 / 3)


def test_rrf_uses_tie_break_order_of_inputs():
    # equal input scores: ranks come from doc id order (a before b)
    r = _run({"q": {"b": 1.0, "a": 1.0}}, "r")
    fused = fuse([r], method="rrf", k=0)
    assert fused["q"].scores() == {"a": 1.0, "b": 0.5}


def test_combsum_minmax_hand_computed():
    fused = fuse([A, B], method="combsum", norm="minmax")
    s = fused["q1"].scores()
    # A minmax: a=1, b=.5, c=0 ; B minmax: b=1, d=.5, a=0 ; missing -> run's min (0)
    assert s == pytest.approx({"a": 1.0, "b": 1.5, "c": 0.0, "d": 0.5})
    assert fused["q1"].doc_ids == ["b", "a", "d", "c"]


def test_combmnz_and_weights():
    fused = fuse([A, B], method="combmnz", norm="minmax", weights=[2.0, 1.0])
    s = fused["q1"].scores()
    # weighted sums: a=2*1+0=2 (2 runs), b=2*.5+1=2 (2 runs), c=0 (1 run), d=.5 (1 run)
    assert s == pytest.approx({"a": 4.0, "b": 4.0, "c": 0.0, "d": 0.5})
    assert fused["q1"].doc_ids == ["a", "b", "d", "c"]


def test_combsum_zscore_missing_policies():
    za = [(3 - 2) / math.sqrt(2 / 3), 0.0, (1 - 2) / math.sqrt(2 / 3)]  # a, b, c
    fused = fuse([A, B], method="combsum", norm="zscore", missing="zero")
    s = fused["q1"].scores()
    mb, sb = 5.0, math.sqrt(((10 - 5) ** 2 + 0 + 25) / 3)
    zb = {"b": (10 - mb) / sb, "d": 0.0, "a": (0 - mb) / sb}
    assert s["a"] == pytest.approx(za[0] + zb["a"])
    assert s["c"] == pytest.approx(za[2] + 0.0)
    fused_min = fuse([A, B], method="combsum", norm="zscore", missing="min")
    assert fused_min["q1"].scores()["c"] == pytest.approx(za[2] + zb["a"])
    assert fused_min["q1"].scores()["d"] == pytest.approx(za[2] + zb["d"])


def test_partial_queries_counted_and_depth():
    r1 = _run({"q1": {"a": 2.0, "b": 1.0}, "q2": {"x": 1.0}}, "r1")
    r2 = _run({"q1": {"c": 5.0, "a": 4.0, "b": 3.0}}, "r2")
    st = FusionStats()
    fused = fuse([r1, r2], method="rrf", k=60, depth=2, stats=st)
    assert set(fused) == {"q1", "q2"}
    assert st.partial_queries == 1 and st.partial_detail == {"q2": 1}
    assert fused["q2"].scores() == pytest.approx({"x": 1 / 61})
    # depth 2 of r2 drops b; b only counts from r1 (rank 2)
    assert len(fused["q1"]) == 2
    assert fused["q1"].doc_ids == ["a", "c"]


def test_constant_scores_counted():
    r = _run({"q": {"a": 1.0, "b": 1.0}}, "r")
    st = FusionStats()
    fused = fuse([r, A], method="combsum", norm="minmax", stats=st)
    assert st.constant_rankings == 1 and st.partial_queries == 2
    assert fused["q"].scores() == {"a": 1.0, "b": 1.0}


@pytest.mark.parametrize("kwargs", [
    {"method": "borda"}, {"norm": "rank"}, {"k": -1}, {"weights": [1.0]}, {"depth": 0},
    {"missing": "max"},
])
def test_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        fuse([A, B], **kwargs)


def main(argv: list[str]) -> int:
    """The ``rankstack`` entry point restricted to ``fuse`` (other commands may be absent)."""
    import argparse

    from rankstack.cli import _common
    from rankstack.cli import fuse as fuse_cli

    parser = argparse.ArgumentParser(prog="rankstack")
    sub = parser.add_subparsers(dest="command", required=True)
    fuse_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        args = _common.apply_configs(parser, argv, args)
        return int(args.func(args) or 0)
    except RankstackError as exc:
        import sys

        print(f"error: {exc}", file=sys.stderr)
        return 2


def test_cli_fuse(tmp_path, capsys):
    pa, pb, out = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "f.txt"
    write_run(A, pa)
    write_run(B, pb)
    assert main(["fuse", str(pa), str(pb), "--method", "rrf", "--k", "60", "--out", str(out)]) == 0
    fused = read_run(out)
    assert fused["q1"].doc_ids == ["b", "a", "d", "c"]
    assert fused["q1"].scores()["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert main(["fuse", str(pa), str(pb), "--method", "combsum", "--norm", "minmax",
                 "--weights", "1", "1", "--depth", "2", "--out", str(out)]) == 0
    # top-2 inputs: A {a: 1, b: 0}, B {b: 1, d: 0}; a missing from B -> 0; a ties b -> id order
    assert read_run(out)["q1"].scores() == pytest.approx({"a": 1.0, "b": 1.0})
    assert main(["fuse", str(pa), str(pb), "--weights", "1", "--out", str(out)]) == 2
    assert "2 runs" in capsys.readouterr().err


@pytest.mark.slow
def test_fusion_dl19_real_runs(capsys):
    ir_measures = pytest.importorskip("ir_measures")
    from rankstack.datasets import load_dataset

    runs = {name: load_dataset(name) for name in ("dl19", "dl19-splade", "dl19-tasb")}
    qrels = runs["dl19"].qrels
    assert qrels is not None
    ndcg = ir_measures.nDCG @ 10

    def score(run: Run) -> float:
        return ir_measures.calc_aggregate([ndcg], qrels.judgments, run.to_dict())[ndcg]

    singles = {name: score(ds.run) for name, ds in runs.items()}
    st = FusionStats()
    fused = fuse([ds.run for ds in runs.values()], method="rrf", k=60, stats=st)
    rrf = score(fused)
    combsum = score(fuse([ds.run for ds in runs.values()], method="combsum", norm="zscore"))
    with capsys.disabled():
        print("\nDL19 nDCG@10: " + ", ".join(f"{n}={v:.4f}" for n, v in singles.items())
              + f", RRF(k=60)={rrf:.4f}, CombSUM(zscore)={combsum:.4f}")
        print("RRF beats: " + ", ".join(f"{n}: {rrf > v}" for n, v in singles.items()))
    # published reference figures of the inputs (README of the data)
    assert singles["dl19"] == pytest.approx(0.5058, abs=2e-3)
    assert singles["dl19-splade"] == pytest.approx(0.7308, abs=2e-3)
    assert singles["dl19-tasb"] == pytest.approx(0.7210, abs=2e-3)
    assert st.n_queries == 43 and st.partial_queries == 0
    # fusing strong runs with BM25 stays well above BM25 alone
    assert rrf > singles["dl19"] + 0.1


def test_fuse_cli_takes_dataset_names(tmp_path, dl19):
    from rankstack.cli import main
    from rankstack.io import read_run

    out = tmp_path / "rrf.txt"
    assert main(["fuse", "dl19", "dl19-tasb", "--method", "rrf", "--out", str(out)]) == 0
    fused = read_run(out)
    assert len(fused) == 43
    q = next(iter(dl19.run))
    assert set(dl19.run[q].doc_ids) <= set(fused[q].doc_ids)
