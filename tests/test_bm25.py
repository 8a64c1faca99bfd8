"""BM25Index: exact scores on a corpus small enough to compute by hand, policies, save/load,
a real-data run on the dl19 candidate passages, and the corpus -> index -> retrieve CLI."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections import Counter

import pytest

from rankstack.errors import ConfigError, InputError
from rankstack.io import read_run
from rankstack.records import Doc, Query, Ranking
from rankstack.retrieve import BM25Index
from rankstack.retrieve.bm25 import FORMAT_VERSION, numba_available

DOCS = [
    Doc("d1", "apple banana"),
    Doc("d2", "apple apple banana cherry"),
    Doc("d3", "banana cherry"),
    Doc("d4", "cherry date"),
    Doc("d5", "date elderberry fig grape"),
]


def reference_bm25(docs: list[Doc], query: str, k1: float = 0.9, b: float = 0.4) -> dict:
    """Lucene (>= 8) BM25 written out: idf = ln(1 + (N - df + .5) / (df + .5)) and
    tf / (tf + k1 (1 - b + b dl / avgdl)), without the constant (k1 + 1) factor Lucene dropped."""
    toks = {d.id: d.text.lower().split() for d in docs}
    n = len(docs)
    avgdl = sum(len(t) for t in toks.values()) / n
    out: dict[str, float] = {}
    for did, t in toks.items():
        tf = Counter(t)
        s = 0.0
        for term in set(query.lower().split()):
            if tf[term]:
                df = sum(1 for x in toks.values() if term in x)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(t) / avgdl))
        if s > 0:
            out[did] = s
    return out


@pytest.fixture(scope="module")
def small_index() -> BM25Index:
    return BM25Index.build(DOCS, stemmer=None, stopwords=None, backend="numpy",
                           show_progress=False)


@pytest.mark.parametrize("query", ["apple", "banana", "cherry apple", "date fig", "grape apple"])
def test_exact_scores_and_order(small_index, query):
    run = small_index.search([Query("q", query)], k=10, show_progress=False)
    got = run["q"]
    want = reference_bm25(DOCS, query)
    assert got.doc_ids == sorted(want, key=lambda d: (-want[d], d))
    for d in got:
        assert d.score == pytest.approx(want[d.doc_id], rel=1e-5)
    assert got.scorer == "bm25(k1=0.9,b=0.4)"


def test_reasoned_order(small_index):
    # "apple": d2 has tf 2 (dl 4) and beats d1 with tf 1 (dl 2); no other doc has the term.
    assert small_index.search([Query("q", "apple")], show_progress=False)["q"].doc_ids == [
        "d2", "d1"]
    # "grape" is rarer than "apple": d5 (grape) outranks both apple docs for "grape apple".
    assert small_index.search([Query("q", "grape apple")], show_progress=False)["q"].doc_ids[
        0] == "d5"


def test_params_change_scores():
    a = BM25Index.build(DOCS, k1=1.2, b=0.75, stemmer=None, stopwords=None, backend="numpy",
                        show_progress=False)
    r = a.search([Query("q", "cherry apple")], show_progress=False)["q"]
    want = reference_bm25(DOCS, "cherry apple", 1.2, 0.75)
    assert r.scores() == pytest.approx(want, rel=1e-5)
    assert r.scorer == "bm25(k1=1.2,b=0.75)"


def test_ties_use_doc_id_order_even_at_the_cutoff():
    docs = [Doc(f"z{i}", "tie word") for i in (5, 3, 1, 4, 2)] + [Doc("a", "other text")]
    idx = BM25Index.build(docs, stemmer=None, stopwords=None, backend="numpy",
                          show_progress=False)
    r = idx.search([Query("q", "tie")], k=2, show_progress=False)["q"]
    assert r.doc_ids == ["z1", "z2"]
    assert idx.last_search_stats.boundary_ties_rescored == 1
    full = idx.search([Query("q", "tie")], k=100, show_progress=False)["q"]
    assert full.doc_ids == ["z1", "z2", "z3", "z4", "z5"]  # only matching docs, k > n_docs ok
    assert idx.last_search_stats.fewer_than_k == 1


def test_empty_rankings_are_kept_and_counted(caplog):
    idx = BM25Index.build(DOCS, backend="numpy", show_progress=False)
    queries = [Query("stop", "the and of"), Query("none", "zzz qqq"), Query("ok", "apples"),
               Query("punct", "?! -")]
    with caplog.at_level(logging.WARNING, logger="rankstack.retrieve.bm25"):
        run = idx.search(queries, k=3, show_progress=False)
    assert list(run) == ["stop", "none", "ok", "punct"]  # query order kept, nothing dropped
    assert len(run["stop"]) == len(run["none"]) == len(run["punct"]) == 0
    assert run["ok"].doc_ids == ["d2", "d1"]  # "apples" stems to "appl"
    st = idx.last_search_stats
    assert st.empty_after_tokenizing == ["stop", "punct"] and st.no_matching_term == ["none"]
    assert st.empty_rankings == 3
    assert "have no tokens after stopword removal" in caplog.text
    assert "match no indexed term" in caplog.text


def test_stemmer_and_stopword_options():
    docs = [Doc("a", "the runner runs"), Doc("b", "running the show")]
    stem = BM25Index.build(docs, backend="numpy", show_progress=False)
    plain = BM25Index.build(docs, stemmer=None, stopwords=None, backend="numpy",
                            show_progress=False)
    custom = BM25Index.build(docs, stemmer=None, stopwords=["show"], backend="numpy",
                             show_progress=False)
    q = [Query("q", "run"), Query("t", "the"), Query("s", "show")]
    assert stem.search(q, show_progress=False)["q"].doc_ids == ["a", "b"]
    assert len(plain.search(q, show_progress=False)["q"]) == 0
    assert plain.search(q, show_progress=False)["t"].doc_ids == ["a", "b"]
    assert len(custom.search(q, show_progress=False)["s"]) == 0


def test_title_is_indexed():
    idx = BM25Index.build([Doc("a", "body text", "Kangaroo"), Doc("b", "more body")],
                          backend="numpy", show_progress=False)
    assert idx.search([Query("q", "kangaroo")], show_progress=False)["q"].doc_ids == ["a"]


def test_mapping_and_list_queries_agree(small_index):
    qs = {"1": Query("1", "apple"), "2": Query("2", "date")}
    a = small_index.search(qs, k=3, show_progress=False)
    b = small_index.search(list(qs.values()), k=3, batch_size=1, show_progress=False)
    assert a.to_dict() == b.to_dict()


def test_bad_inputs():
    with pytest.raises(InputError, match="duplicate doc id 'x'"):
        BM25Index.build([Doc("x", "a"), Doc("x", "b")], show_progress=False)
    with pytest.raises(InputError, match="empty corpus"):
        BM25Index.build([], show_progress=False)
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Index.build(DOCS, stemmer="klingon", show_progress=False)
    with pytest.raises(ConfigError, match="stopword"):
        BM25Index.build(DOCS, stopwords="xx", show_progress=False)
    with pytest.raises(ConfigError, match="k1"):
        BM25Index.build(DOCS, b=2.0, show_progress=False)
    idx = BM25Index.build(DOCS, backend="numpy", show_progress=False)
    with pytest.raises(InputError, match="more than once"):
        idx.search([Query("q", "a"), Query("q", "b")], show_progress=False)
    with pytest.raises(ConfigError, match="k must"):
        idx.search([Query("q", "a")], k=0, show_progress=False)


# ------------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_manifest(small_index, tmp_path):
    d = tmp_path / "ix"
    small_index.save(d)
    m = json.loads((d / "rankstack.json").read_text())
    from rankstack import __version__

    assert m["format"] == "rankstack-bm25" and m["format_version"] == FORMAT_VERSION
    assert m["rankstack_version"] == __version__ and m["bm25s_version"]
    assert m["params"] == {"k1": 0.9, "b": 0.4, "method": "lucene", "stemmer": None,
                           "stopwords": None, "lower": True,
                           "token_pattern": r"(?u)\b\w\w+\b"}
    assert m["n_docs"] == 5
    assert (d / "docids.txt").read_text().split("\n") == [x.id for x in DOCS] + [""]
    assert (d / "params.index.json").is_file() and (d / "vocab.index.json").is_file()
    qs = [Query(str(i), t) for i, t in enumerate(["apple", "cherry apple", "fig", "nothing"])]
    want = small_index.search(qs, k=3, show_progress=False)
    for mmap in (True, False):
        got = BM25Index.load(d, mmap=mmap, backend="numpy").search(qs, k=3, show_progress=False)
        assert got.to_dict() == want.to_dict()
        assert [r.doc_ids for r in got.values()] == [r.doc_ids for r in want.values()]
    # Saving again over an existing index replaces it atomically and leaves no temp dirs.
    other = BM25Index.build(DOCS[:2], backend="numpy", show_progress=False)
    other.save(d)
    assert len(BM25Index.load(d, backend="numpy")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_save_refuses_to_replace_other_dirs(small_index, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a rankstack index"):
        small_index.save(tmp_path / "data")
    assert (tmp_path / "data" / "precious.txt").read_text() == "x"


def test_load_errors(small_index, tmp_path):
    with pytest.raises(InputError, match="does not exist") as ei:
        BM25Index.load(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(ei.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a rankstack BM25 index"):
        BM25Index.load(tmp_path / "empty")

    def fresh(name):
        d = tmp_path / name
        small_index.save(d)
        return d, json.loads((d / "rankstack.json").read_text())

    d, m = fresh("newer")
    m["format_version"] = FORMAT_VERSION + 1
    (d / "rankstack.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="newer rankstack") as ei:
        BM25Index.load(d)
    assert "rankstack.json" in str(ei.value) and "format_version" in str(ei.value)

    d, _ = fresh("badjson")
    (d / "rankstack.json").write_text('{\n"format": "rankstack-bm25",\n oops')
    with pytest.raises(InputError, match="corrupt manifest") as ei:
        BM25Index.load(d)
    assert f"{d / 'rankstack.json'}:3" in str(ei.value)

    d, _ = fresh("ids")
    (d / "docids.txt").write_text("d1\nd2\n")
    with pytest.raises(InputError, match="has 2 doc ids but the manifest says 5"):
        BM25Index.load(d)

    d, _ = fresh("npy")
    (d / "data.csc.index.npy").unlink()
    with pytest.raises(InputError, match="corrupt or incomplete") as ei:
        BM25Index.load(d)
    assert str(d) in str(ei.value)

    d, _ = fresh("trunc")
    (d / "indptr.csc.index.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match="corrupt or incomplete"):
        BM25Index.load(d)


# ------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_dl19_candidate_corpus(dl19, tmp_path, capsys):
    import ir_measures
    from ir_measures import nDCG

    idx = BM25Index.build(dl19.docs.values(), show_progress=False)  # numba when installed
    assert len(idx) == len(dl19.docs) > 4000
    run = idx.search(dl19.queries, k=100, show_progress=False)
    assert len(run) == 43 and idx.last_search_stats.empty_rankings == 0
    assert all(len(r) == 100 for r in run.values())
    for r in run.values():  # the fast path builds Rankings that re-validate and re-sort the same
        again = Ranking(r.query_id, list(r.docs), r.scorer)
        assert again.doc_ids == r.doc_ids and all(type(d.score) is float for d in r)
    idx.save(tmp_path / "ix")
    again = BM25Index.load(tmp_path / "ix").search(dl19.queries, k=100, show_progress=False)
    assert again.to_dict() == run.to_dict()
    if numba_available():  # both backends give the same rankings
        numpy_run = BM25Index.load(tmp_path / "ix", backend="numpy").search(
            dl19.queries, k=100, show_progress=False)
        assert [r.doc_ids for r in numpy_run.values()] == [r.doc_ids for r in run.values()]
    ndcg = ir_measures.calc_aggregate([nDCG @ 10], dl19.qrels.judgments, run.to_dict())[nDCG @ 10]
    with capsys.disabled():
        print(f"\nBM25 over the {len(idx)} dl19 candidate passages: nDCG@10 = {ndcg:.4f} "
              f"(Pyserini on the full 8.8M collection: 0.5058)")
    assert 0.3 < ndcg < 0.95


@pytest.mark.slow
def test_cli_corpus_index_retrieve(dl19, tmp_path, capsys):
    from rankstack.cli import main

    corpus, ix, out = tmp_path / "corpus.jsonl", tmp_path / "ix", tmp_path / "run.txt"
    assert main(["corpus", "--from", "dl19", "dl19", "--out", str(corpus)]) == 0
    text = capsys.readouterr().err
    assert f"wrote {len(dl19.docs)} unique passages" in text
    assert f"{len(dl19.docs)} already present" in text  # the second dl19 adds nothing
    assert main(["index", "--corpus", str(corpus), "--index-dir", str(ix), "--k1", "1.2",
                 "--b", "0.75"]) == 0
    assert json.loads((ix / "rankstack.json").read_text())["params"]["k1"] == 1.2
    assert main(["retrieve", "--index-dir", str(ix), "--queries", "dl19", "--k", "10",
                 "--out", str(out)]) == 0
    run = read_run(out)
    assert len(run) == 43 and all(len(r) == 10 for r in run.values())
    assert run.name == "bm25"
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\tthe of and\n2\twhat is a kangaroo\n")
    assert main(["retrieve", "--index-dir", str(ix), "--queries", str(topics), "--k", "5",
                 "--out", str(out)]) == 0
    assert "1 query(ies) got an empty ranking" in capsys.readouterr().err
    assert list(read_run(out)) == ["2"]
    shutil.rmtree(ix)
    assert main(["retrieve", "--index-dir", str(ix), "--queries", "dl19", "--out",
                 str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
