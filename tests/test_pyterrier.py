"""rankstack re-rankers and indexes as PyTerrier transformers (extra ``pyterrier``)."""

from __future__ import annotations

import json

import pytest

pt = pytest.importorskip("pyterrier", reason="extra 'pyterrier' not installed")

from rankstack.cli import main  # noqa: E402
from rankstack.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def frames(dl19):
    from rankstack.integrations.pyterrier import dataset_frames

    topics, res, qrels = dataset_frames("dl19")
    keep = list(topics["qid"][:3])
    return (topics[topics.qid.isin(keep)], res[res.qid.isin(keep)], qrels)


def test_experiment_ndcg_equals_rankstack_evaluate(frames, tiny_bert_dir, tmp_path):
    """pt.Experiment over BM25 >> a tiny rankstack cross-encoder == `rankstack rerank` +
    `rankstack evaluate` of the same candidates."""
    from ir_measures import nDCG

    from rankstack.integrations.pyterrier import RankstackReranker
    from rankstack.io import write_run
    from rankstack.records import Run

    topics, res, qrels = frames
    spec = {"model": str(tiny_bert_dir), "family": "cross-encoder",
            "settings": {"dtype": "fp32", "depth": 20}}
    bm25 = pt.Transformer.from_df(res)
    pipe = bm25 >> RankstackReranker(spec)
    exp = pt.Experiment([bm25, pipe], topics, qrels, eval_metrics=[nDCG @ 10],
                        names=["bm25", "bm25>>tiny"])
    got = dict(zip(exp["name"], exp["nDCG@10"], strict=True))

    # the same job the rankstack way: rerank CLI on the same 3 queries, then evaluate CLI
    from rankstack.datasets import load_dataset

    ds = load_dataset("dl19")
    cands = tmp_path / "cands.run"
    write_run(Run({q: ds.run[q] for q in topics["qid"]}, name="bm25"), cands)
    out = tmp_path / "tiny.run"
    assert main(["rerank", "--model", str(tiny_bert_dir), "--family", "cross-encoder",
                 "--candidates", "dl19", "--run", str(cands), "--depth", "20", "--dtype", "fp32",
                 "--out", str(out), "--no-progress"]) == 0
    assert main(["evaluate", str(cands), str(out), "--qrels", "dl19", "--measures", "nDCG@10",
                 "--missing", "skip", "--json", str(tmp_path / "ev.json")]) == 0
    ev = {r["name"]: r["aggregates"]["nDCG@10"]
          for r in json.loads((tmp_path / "ev.json").read_text())["runs"]}
    assert got["bm25"] == pytest.approx(ev["cands.run"], abs=1e-9)
    assert got["bm25>>tiny"] == pytest.approx(ev["tiny.run"], abs=1e-9)
    assert got["bm25>>tiny"] != got["bm25"]  # the re-ranker did change the order


def test_reranker_frame_conventions(frames, tiny_bert_dir):
    from rankstack.integrations.pyterrier import RankstackReranker
    from rankstack.rerank.reranker import Reranker

    _, res, _ = frames
    rr = Reranker.from_pretrained(str(tiny_bert_dir), "cross-encoder", dtype="fp32",
                                  show_progress=False)
    out = RankstackReranker(rr, depth=5).transform(res)
    assert len(out) == len(res) and set(res.columns) <= set(out.columns)
    for _, g in out.groupby("qid"):
        assert list(g["rank"]) == list(range(len(g)))  # 0-based, sorted
        assert g["score"].is_monotonic_decreasing
        # below depth 5: the BM25 order is kept
        tail = list(g["docno"])[5:]
        bm25 = list(res[res.qid == g.qid.iloc[0]].sort_values("rank")["docno"])
        assert tail == [d for d in bm25 if d in tail]
    with pytest.raises(InputError, match="text"):
        RankstackReranker(rr).transform(res.drop(columns=["text"]))


def test_bm25_retriever_then_rerank(tmp_path, tiny_bert_dir):
    import pandas as pd

    from rankstack.integrations.pyterrier import RankstackReranker, RankstackRetriever
    from rankstack.records import Doc
    from rankstack.retrieve.bm25 import BM25Index

    docs = {f"d{i}": Doc(f"d{i}", t) for i, t in enumerate(
        ["the cat sat on the mat", "dogs chase cats", "stock markets fell", "a cat and a dog"])}
    index = BM25Index.build(list(docs.values()))
    topics = pd.DataFrame({"qid": ["1", "2"], "query": ["cat", "markets"]})
    bm25 = RankstackRetriever(index, k=3, docs=docs)
    res = bm25.transform(topics)
    assert set(res.columns) >= {"qid", "query", "docno", "score", "rank", "text"}
    assert res[res.qid == "2"]["docno"].iloc[0] == "d2"
    out = (bm25 >> RankstackReranker({"model": str(tiny_bert_dir), "family": "cross-encoder",
                                      "settings": {"dtype": "fp32"}})).transform(topics)
    assert sorted(out["docno"]) == sorted(res["docno"])
