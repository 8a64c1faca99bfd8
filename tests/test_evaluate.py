"""Evaluation: measures vs pytrec_eval on the real DL runs, hand-computed cases, policies, tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import rankstack.cli as cli
from rankstack.datasets import DATASETS, data_dir
from rankstack.errors import ConfigError
from rankstack.evaluate import (
    Evaluator,
    holm,
    paired_t_test,
    permutation_test,
    resolve_measure,
)
from rankstack.evaluate.report import plot_deltas, write_json
from rankstack.io import read_qrels, read_run, write_run
from rankstack.records import Qrels, Run


@pytest.fixture(scope="module")
def trec_dl() -> Path:
    try:
        d = data_dir() / "trec-dl"
    except ConfigError as exc:
        pytest.skip(f"shared TREC DL data not available: {exc}")
    if not (d / "qrels.dl19-passage.txt").is_file():
        pytest.skip(f"shared TREC DL data not available in {d}")
    return d


def _cli(monkeypatch, argv: list[str]) -> int:
    # Only this module's subcommand: the test must not depend on other subcommands' imports.
    monkeypatch.setattr(cli, "COMMANDS", {"evaluate": "rankstack.cli.evaluate"})
    return cli.main(argv)


# --- real data -------------------------------------------------------------------------------

@pytest.mark.parametrize("year,expected", [("19", 0.5058), ("20", 0.4796)])
def test_bm25_ndcg10_matches_reference_and_pytrec_eval(trec_dl, year, expected):
    import pytrec_eval

    qrels_path = trec_dl / f"qrels.dl{year}-passage.txt"
    run_path = trec_dl / f"trec_results_dl{year}_top100.txt"
    ev = Evaluator(["nDCG@10"], read_qrels(qrels_path), binary_rel=2)
    res = ev.evaluate(read_run(run_path))
    assert round(res.aggregates["nDCG@10"], 4) == expected

    with open(qrels_path) as fq, open(run_path) as fr:
        qrels, run = pytrec_eval.parse_qrel(fq), pytrec_eval.parse_run(fr)
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    assert set(direct) == set(res.per_query["nDCG@10"])
    for qid, vals in direct.items():
        assert res.per_query["nDCG@10"][qid] == pytest.approx(vals["ndcg_cut_10"], abs=1e-12)
    mean = math.fsum(v["ndcg_cut_10"] for v in direct.values()) / len(direct)
    assert res.aggregates["nDCG@10"] == pytest.approx(mean, abs=1e-12)
    assert res.counts()["missing"] == 0 and res.counts()["unjudged_ignored"] == 0


@pytest.mark.parametrize("name,expected", [("dl19-splade", 0.7308), ("dl20-splade", 0.7197),
                                           ("dl19-tasb", 0.7210), ("dl20-tasb", 0.6854)])
def test_reference_runs_equal_trec_eval_order(trec_dl, name, expected):
    # Rank-derived scores (our tie-break: doc id ascending) give trec_eval's numbers on the
    # shipped runs wherever no score tie matters; trec_eval breaks ties by doc id descending.
    import pytrec_eval

    from rankstack.datasets import load_dataset

    ds = load_dataset(name)
    ev = Evaluator(["nDCG@10", "RR", "R@100", "AP"], ds.qrels,
                   binary_rel=DATASETS[name].binary_rel)
    res = ev.evaluate(ds.run)
    assert round(res["nDCG@10"], 4) == expected
    direct = pytrec_eval.RelevanceEvaluator(
        ds.qrels.judgments, {"ndcg_cut.10", "recip_rank", "recall.100", "map"}, relevance_level=2
    ).evaluate(ds.run.to_dict())
    for ours, theirs in [("nDCG@10", "ndcg_cut_10"), ("RR(rel=2)", "recip_rank"),
                         ("R(rel=2)@100", "recall_100")]:
        assert res.per_query[ours] == pytest.approx({q: v[theirs] for q, v in direct.items()},
                                                    abs=1e-12)
    # AP looks at the whole ranking: where it differs, the run has tied scores for that query
    # (dl20-splade: query 583468, ranks 22-23, grades 2 and 1).
    tied = {q for q, r in ds.run.items() if len({d.score for d in r}) < len(r)}
    differ = {q for q, v in direct.items() if abs(res.per_query["AP(rel=2)"][q] - v["map"]) > 1e-12}
    assert differ <= tied
    assert differ == ({"583468"} if name == "dl20-splade" else set())


def test_cli_single_run_prints_reference(trec_dl, monkeypatch, capsys):
    rc = _cli(monkeypatch, ["evaluate", str(trec_dl / "trec_results_dl19_top100.txt"),
                            "--qrels", "dl19"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "nDCG@10 0.5058" in out
    assert "RR(rel=2)@10" in out  # dl19 carries binary_rel=2
    assert DATASETS["dl19"].binary_rel == 2 and DATASETS["dl20-tasb"].binary_rel == 2


def test_cli_dataset_name_as_run_and_qrels_file(trec_dl, monkeypatch, capsys):
    rc = _cli(monkeypatch, ["evaluate", "dl20", "--qrels", str(trec_dl / "qrels.dl20-passage.txt"),
                            "--measures", "nDCG@10", "AP"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "nDCG@10 0.4796" in out
    assert "AP " in out  # a qrels file: binary_rel 1, so AP keeps its default name


def test_cli_compare_json_plot(trec_dl, monkeypatch, capsys, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "deltas.png"
    rc = _cli(monkeypatch, [
        "evaluate", str(trec_dl / "trec_results_dl19_top100.txt"), "dl19-splade", "dl19-tasb",
        "--qrels", "dl19", "--measures", "nDCG@10", "RR@10", "--test", "both",
        "--rounds", "2000", "--json", str(out_json), "--plot", str(out_png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(baseline)" in out and "▲" in out
    data = json.loads(out_json.read_text())
    assert data["baseline"] == "trec_results_dl19_top100.txt"
    assert data["binary_rel"] == 2 and data["measures"] == ["nDCG@10", "RR(rel=2)@10"]
    by_name = {r["name"]: r for r in data["runs"]}
    assert round(by_name["dl19-splade"]["aggregates"]["nDCG@10"], 4) == 0.7308
    assert round(by_name["dl19-tasb"]["aggregates"]["nDCG@10"], 4) == 0.7210
    assert len(by_name["dl19-tasb"]["per_query"]["nDCG@10"]) == 43
    assert by_name["dl19-tasb"]["counts"]["aggregated"] == 43
    assert len(data["tests"]) == 2 * 2 * 2  # runs x measures x tests
    ndcg = [t for t in data["tests"] if t["measure"] == "nDCG@10"]
    assert all(t["significant"] and t["p_holm"] < 0.01 for t in ndcg)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_config_and_errors(trec_dl, monkeypatch, capsys, tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("qrels: dl19\nmeasures: [P@10]\nbinary_rel: 1\n")
    rc = _cli(monkeypatch, ["evaluate", str(trec_dl / "trec_results_dl19_top100.txt"),
                            "--config", str(cfg)])
    out = capsys.readouterr().out
    assert rc == 0 and "\nP@10 0." in out  # rel=1 is ir_measures' default, shown without rel

    assert _cli(monkeypatch, ["evaluate", "no-such-run", "--qrels", "dl19"]) == 2
    assert "neither a file nor a dataset name" in capsys.readouterr().err
    assert _cli(monkeypatch, ["evaluate", "dl19", "--qrels", "dl19", "--measures", "Foo@3"]) == 2
    assert "Foo@3" in capsys.readouterr().err
    assert _cli(monkeypatch, ["evaluate", "dl19", "--qrels", "dl21"]) == 2
    assert "no qrels" in capsys.readouterr().err


# --- hand-computed cases ---------------------------------------------------------------------

def test_ndcg10_graded_linear_gain_by_hand():
    qrels = Qrels({"q1": {"a": 3, "b": 2, "c": 0, "d": 1}})
    run = Run.from_dict({"q1": {"c": 4.0, "a": 3.0, "d": 2.0, "b": 1.0, "x": 0.5}})
    dcg = 0 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4) + 2 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    res = Evaluator(["nDCG@10", "nDCG@2"], qrels).evaluate(run)
    assert res["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-12)
    assert res["nDCG@2"] == pytest.approx((3 / math.log2(3)) / (3 + 2 / math.log2(3)), abs=1e-12)


def test_rr_binary_rel():
    qrels = Qrels({"q1": {"a": 1, "b": 2}, "q2": {"c": 3}})
    run = Run.from_dict({"q1": {"a": 3.0, "b": 2.0, "z": 1.0}, "q2": {"z": 2.0, "c": 1.0}})
    two = Evaluator(["RR@10", "RR(rel=1)@10", "P@2"], qrels, binary_rel=2).evaluate(run)
    assert two.measures == ["RR(rel=2)@10", "RR@10", "P(rel=2)@2"]
    assert two.per_query["RR(rel=2)@10"] == {"q1": 0.5, "q2": 0.5}
    assert two.per_query["RR@10"] == {"q1": 1.0, "q2": 0.5}  # explicit rel=1 kept
    assert two["P(rel=2)@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    one = Evaluator(["RR@10"], qrels, binary_rel=1).evaluate(run)
    assert one["RR@10"] == pytest.approx(0.75)
    assert str(resolve_measure("NumRet", 2)) == "NumRet"  # count of all retrieved: left alone


def test_ties_follow_rankstack_order():
    # Equal scores: rankstack ranks doc ids ascending ("a" before "b"); trec_eval would put "b"
    # first (doc id descending). Rank-derived scores make ir_measures follow our rule.
    qrels = Qrels({"q": {"b": 1}})
    run = Run.from_dict({"q": {"a": 1.0, "b": 1.0}})
    assert Evaluator(["RR"], qrels).evaluate(run)["RR"] == 0.5


def test_missing_and_unjudged_policies():
    qrels = Qrels({"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}})
    run = Run.from_dict({"q1": {"a": 1.0}, "q2": {}, "q9": {"a": 1.0}})  # q2 empty, q3 absent
    zero = Evaluator(["RR", "Judged@10"], qrels, missing="zero").evaluate(run)
    assert zero.evaluated == ["q1"] and zero.missing == ["q2", "q3"] and zero.unjudged == ["q9"]
    assert zero.per_query["RR"] == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert zero["RR"] == pytest.approx(1 / 3)
    assert zero.counts() == {"aggregated": 3, "evaluated": 1, "missing": 2,
                             "missing_policy": "zero", "unjudged_ignored": 1, "no_value": {}}
    skip = Evaluator(["RR"], qrels, missing="skip").evaluate(run)
    assert skip.per_query["RR"] == {"q1": 1.0} and skip["RR"] == 1.0
    assert skip.counts()["aggregated"] == 1 and skip.counts()["missing"] == 2

    nothing = Evaluator(["RR"], qrels, missing="skip").evaluate(Run.from_dict({"q9": {"a": 1.0}}))
    assert math.isnan(nothing["RR"])


def test_evaluator_is_reusable_and_validates():
    qrels = Qrels({"q1": {"a": 1, "b": 0}})
    ev = Evaluator(["P@1"], qrels)
    assert ev.evaluate(Run.from_dict({"q1": {"a": 2.0, "b": 1.0}}))["P@1"] == 1.0
    assert ev.evaluate(Run.from_dict({"q1": {"a": 1.0, "b": 2.0}}))["P@1"] == 0.0
    with pytest.raises(ConfigError, match="malformed"):
        Evaluator(["nDCG@x"], qrels)
    with pytest.raises(ConfigError, match="cannot compute"):
        Evaluator(["NumRel"], qrels, binary_rel=2)  # ir_measures has no provider for it
    with pytest.raises(ConfigError, match="missing"):
        Evaluator(["P@1"], qrels, missing="drop")
    with pytest.raises(ConfigError, match="no judged"):
        Evaluator(["P@1"], Qrels({}))


# --- statistics ------------------------------------------------------------------------------

def test_holm_known_values():
    adj = holm([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    with_nan = holm([0.02, math.nan, 0.01])
    assert math.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02)
    assert with_nan[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_permutation_test_sanity():
    import numpy as np

    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 30)
    # identical runs: every sign assignment ties the observed 0 -> p = 1 (sampled and exact)
    assert permutation_test(base, base).p_value == 1.0
    assert permutation_test(base[:5], base[:5]).p_value == 1.0
    better = base + 0.3 + rng.normal(0, 0.05, 30)
    p = permutation_test(better, base, rounds=10_000, seed=0).p_value
    assert p == pytest.approx(1 / 10_001)  # nothing beats an all-positive delta vector
    assert permutation_test(better, base, seed=7) == permutation_test(better, base, seed=7)
    # exact enumeration for 2**5 <= rounds: only the all-+ and all-- sign vectors reach |mean|
    assert permutation_test([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]).p_value == pytest.approx(2 / 32)
    noise = rng.normal(0, 1, 30)
    assert permutation_test(base + noise, base, seed=0).p_value > 0.01


def test_paired_t_test():
    a, b = [0.5, 0.6, 0.9, 0.4], [0.4, 0.6, 0.5, 0.1]
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    out = paired_t_test(a, b)
    assert out.statistic == pytest.approx(mean / (sd / 2))
    assert 0 < out.p_value < 1
    assert paired_t_test(a, a).p_value == 1.0
    assert math.isnan(paired_t_test([1.0], [0.0]).p_value)


def test_compare_api_json_png(tmp_path):
    qrels = Qrels({str(i): {"r": 1, "n": 0} for i in range(12)})
    good = Run.from_dict({str(i): {"r": 2.0, "n": 1.0} for i in range(12)}, name="good")
    bad = Run.from_dict({str(i): {"r": 1.0, "n": 2.0} for i in range(12)}, name="bad")
    ev = Evaluator(["RR", "P@1"], qrels)
    comp = ev.compare([bad, good, bad], baseline="bad", rounds=5000)
    assert [r.name for r in comp.results] == ["bad", "good", "bad#2"]
    t = comp.test("good", "RR", "perm")
    assert t.mean_delta == pytest.approx(0.5) and t.n == 12
    assert t.p_value == pytest.approx(2 / 4096)  # exact: 2**12 <= 5000 sign vectors
    same = comp.test("bad#2", "RR", "perm")
    assert same.p_value == 1.0 and not same.significant(0.05)
    # Holm over the 2 compared runs: the smaller p is doubled, the larger stays 1
    assert t.p_holm == pytest.approx(2 * 2 / 4096) and same.p_holm == 1.0
    assert t.significant(0.05)
    path = tmp_path / "out" / "cmp.json"
    write_json(comp, str(path))
    data = json.loads(path.read_text())
    assert data["runs"][1]["aggregates"] == {"RR": 1.0, "P@1": 1.0}
    assert {t["test"] for t in data["tests"]} == {"t", "perm"}
    png = tmp_path / "d.png"
    plot_deltas(comp, str(png), "RR")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError):
        plot_deltas(comp, str(png), "nDCG@10")
    single = ev.compare([good])
    assert single.tests == [] and single.baseline is None
    with pytest.raises(ConfigError):
        plot_deltas(single, str(png))


def test_write_run_roundtrip_same_values(tmp_path):
    qrels = Qrels({"q": {"b": 2, "c": 1}})
    run = Run.from_dict({"q": {"a": 1.0, "b": 1.0, "c": 3.0}}, name="tie")
    write_run(run, tmp_path / "r.txt")
    ev = Evaluator(["nDCG@10", "RR"], qrels)
    assert ev.evaluate(read_run(tmp_path / "r.txt")).aggregates == ev.evaluate(run).aggregates


def test_cli_missing_skip_per_query_external_baseline(trec_dl, monkeypatch, capsys, tmp_path):
    full = read_run(trec_dl / "trec_results_dl19_top100.txt")
    qids = sorted(full)[:40]
    partial = Run({q: full[q] for q in qids}, name="partial")
    partial.add(Run.from_dict({"999": {"x": 1.0}})["999"])  # a query without judgments
    write_run(partial, tmp_path / "partial.txt")
    out_json = tmp_path / "p.json"
    rc = _cli(monkeypatch, [
        "evaluate", str(tmp_path / "partial.txt"), "--qrels", "dl19", "--missing", "skip",
        "--baseline", str(trec_dl / "trec_results_dl19_top100.txt"), "--test", "t",
        "--per-query", "--json", str(out_json), "--measures", "nDCG@10"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "partial.txt: 3 judged querie(s) not in the run, left out of the means" in out
    assert "partial.txt: 1 querie(s) without judgments ignored" in out
    assert f"partial.txt\tnDCG@10\t{qids[0]}\t" in out
    data = json.loads(out_json.read_text())
    assert data["baseline"] == "trec_results_dl19_top100.txt"
    run = {r["name"]: r for r in data["runs"]}["partial.txt"]
    assert run["counts"] == {"aggregated": 40, "evaluated": 40, "missing": 3,
                             "missing_policy": "skip", "unjudged_ignored": 1, "no_value": {}}
    assert run["unjudged_queries"] == ["999"] and len(run["per_query"]["nDCG@10"]) == 40
    (test,) = data["tests"]
    # same rankings on the 40 shared queries: paired deltas are all 0
    assert test["n"] == 40 and test["mean_delta"] == 0.0 and test["p_value"] == 1.0
