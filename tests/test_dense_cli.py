"""``rankstack index --dense`` / ``rankstack retrieve`` on a dense index, with a tiny BERT
bi-encoder (random weights, CLS pooling, cosine) built by tests/tiny_models.py."""

from __future__ import annotations

import json

import pytest

from rankstack.cli import main
from rankstack.io import read_run, read_topics

pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXTS = [
    "cats eat food", "Paris is the capital of France", "the river Seine is in Paris",
    "dogs sleep a long time", "python is a programming language", "rain today in Berlin",
    "music and guitar and piano", "one two three four five", "what is the weather tomorrow",
    "the snake eats animals",
]
# each query is the exact text of one passage: the top-1 is that passage (cosine 1)
QUERIES = {"q1": (1, TEXTS[1]), "q2": (4, TEXTS[4]), "q3": (6, TEXTS[6]), "q4": (8, TEXTS[8])}
# fp32 and one thread on both sides, so CLI and API encode identically
ENC = ["--setting", "pooling=cls", "--setting", "dtype=fp32", "--setting", "threads=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dense_cli")
    (d / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    (d / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, (_, t) in QUERIES.items()))
    return d


@pytest.fixture(scope="module")
def dense_dir(files, tiny_bert_dir):
    ix = files / "dense"
    rc = main(["index", "--dense", "--corpus", str(files / "corpus.jsonl"), "--index-dir",
               str(ix), "--model", str(tiny_bert_dir), "--family", "bi-encoder",
               "--encode-batch-size", "4", *ENC])
    assert rc == 0
    return ix


def test_index_writes_dense_manifest(dense_dir, tiny_bert_dir):
    m = json.loads((dense_dir / "rankstack.json").read_text())
    assert m["format"] == "rankstack-dense" and m["n_docs"] == len(TEXTS) and m["dim"] == 32
    assert m["model"] == str(tiny_bert_dir) and m["family"] == "bi-encoder"
    assert m["pooling"] == "cls" and m["similarity"] == "cosine"
    assert (dense_dir / "docids.txt").read_text().split() == [f"d{i}" for i in range(len(TEXTS))]


def test_cli_run_equals_api_search(files, dense_dir):
    from rankstack.retrieve.dense import DenseIndex, load_encoder_for_index

    out = files / "exact.trec"
    # no --dense: the kind comes from the manifest; query encoder from the manifest too
    assert main(["retrieve", "--index-dir", str(dense_dir), "--queries",
                 str(files / "topics.tsv"), "--k", "5", "--out", str(out),
                 "--query-setting", "dtype=fp32"]) == 0
    got = read_run(out)
    enc = load_encoder_for_index(dense_dir, dtype="fp32", threads=1)
    ref = DenseIndex.load(dense_dir, enc).search(read_topics(files / "topics.tsv"), k=5,
                                                 show_progress=False)
    assert set(got) == set(ref) == set(QUERIES)
    for qid, (top, _) in QUERIES.items():
        assert got[qid].doc_ids == ref[qid].doc_ids and len(got[qid]) == 5
        assert [d.score for d in got[qid]] == pytest.approx([d.score for d in ref[qid]],
                                                             abs=1e-6)
        assert got[qid].doc_ids[0] == f"d{top}"
    assert out.read_text().split("\n")[0].endswith(" dense")  # default run tag


def test_hnsw_from_yaml_config_agrees_on_top1(files, dense_dir):
    cfg = files / "hnsw.yaml"
    cfg.write_text(f"index_dir: {dense_dir}\nqueries: {files / 'topics.tsv'}\nk: 3\n"
                   f"out: {files / 'hnsw.trec'}\ndense: true\nmode: hnsw\nhnsw_m: 4\n"
                   f"ef_construction: 16\nef_search: 8\nquery_setting: {{dtype: fp32}}\n")
    assert main(["retrieve", "--config", str(cfg)]) == 0
    hnsw = read_run(files / "hnsw.trec")
    assert {q: r.doc_ids[0] for q, r in hnsw.items()} == \
        {q: f"d{top}" for q, (top, _) in QUERIES.items()}


def test_index_from_yaml_config_and_dataset_json(files, tiny_bert_dir, tmp_path):
    # a retrieve-results JSON as the corpus: the passages it ships are indexed
    rr = tmp_path / "cands.json"
    rr.write_text(json.dumps([{"query": "capital of France", "hits": [
        {"qid": "q1", "docid": f"p{i}", "score": 1.0 - i, "content": TEXTS[i]}
        for i in range(3)]}]))
    cfg = tmp_path / "index.yaml"
    cfg.write_text(f"dense: true\ncorpus: {rr}\nindex_dir: {tmp_path / 'ix'}\n"
                   f"model: {tiny_bert_dir}\nsetting: {{pooling: mean, similarity: dot, "
                   f"dtype: fp32}}\n")
    assert main(["index", "--config", str(cfg)]) == 0
    m = json.loads((tmp_path / "ix" / "rankstack.json").read_text())
    assert m["n_docs"] == 3 and m["pooling"] == "mean" and m["similarity"] == "dot"
    assert (tmp_path / "ix" / "docids.txt").read_text().split() == ["p0", "p1", "p2"]


def test_errors(files, dense_dir, capsys):
    bm = files / "bm25"
    assert main(["index", "--corpus", str(files / "corpus.jsonl"), "--index-dir", str(bm)]) == 0
    topics = str(files / "topics.tsv")
    capsys.readouterr()
    assert main(["retrieve", "--index-dir", str(bm), "--queries", topics, "--dense",
                 "--out", str(files / "x.trec")]) == 2
    err = capsys.readouterr().err
    assert "--dense given" in err and "is a BM25 index" in err and "rankstack-bm25" in err
    assert main(["retrieve", "--index-dir", str(bm), "--queries", topics, "--mode", "hnsw",
                 "--out", str(files / "x.trec")]) == 2
    assert "--mode: dense search options" in capsys.readouterr().err
    assert not (files / "x.trec").exists()
    # option / setting mix-ups at index time
    assert main(["index", "--dense", "--corpus", str(files / "corpus.jsonl"), "--index-dir",
                 str(files / "y"), "--k1", "1.2"]) == 2
    assert "--k1: BM25 options" in capsys.readouterr().err
    assert main(["index", "--corpus", str(files / "corpus.jsonl"), "--index-dir",
                 str(files / "y"), "--model", "m"]) == 2
    assert "add --dense" in capsys.readouterr().err
    assert main(["index", "--dense", "--corpus", str(files / "corpus.jsonl"), "--index-dir",
                 str(files / "y"), "--setting", "colour=red"]) == 2
    assert "unknown encoder setting 'colour'" in capsys.readouterr().err
    assert main(["index", "--dense", "--corpus", str(files / "missing.jsonl"), "--index-dir",
                 str(files / "y")]) == 2
    assert "corpus file does not exist" in capsys.readouterr().err
    assert not (files / "y").exists()
    # a directory that is no index
    assert main(["retrieve", "--index-dir", str(files), "--queries", topics,
                 "--out", str(files / "x.trec")]) == 2
    assert "not a rankstack index" in capsys.readouterr().err
