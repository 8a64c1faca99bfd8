"""BM25 search without per-hit objects: identical top-k to the reference (bm25s's own scores
over the whole index, cut by the rankstack rule), ArrayRanking behaves as a Ranking, the numba
kernel is cached across processes, and the backend is recorded and selectable."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rankstack.records import ArrayRanking, Doc, Query, Ranking, ScoredDoc
from rankstack.retrieve import BM25Index
from rankstack.retrieve.bm25 import METHODS, numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba (extra 'fast') missing")
BACKENDS = ["numpy", pytest.param("numba", marks=needs_numba)]


def reference(index: BM25Index, query: str, k: int) -> list[tuple[str, float]]:
    """The old path's result by definition: bm25s's scores of every doc, positives only,
    score desc then doc id asc, first k."""
    toks = index.tokenize_queries([query])[0]
    vocab = index._bm25.vocab_dict
    tids = [vocab[w] for w in toks if w in vocab]
    if not tids:
        return []
    full = np.asarray(index._bm25.get_scores_from_ids(tids))
    hits = [(index.doc_ids[i], float(full[i])) for i in np.nonzero(full > 0)[0]]
    return sorted(hits, key=lambda h: (-h[1], h[0]))[:k]


def as_pairs(r: Ranking) -> list[tuple[str, float]]:
    return [(d.doc_id, d.score) for d in r.docs]


def tie_corpus(n: int = 300, seed: int = 0) -> list[Doc]:
    """Few distinct texts under shuffled ids: every query has large score ties."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    ids = [f"d{rng.randrange(10**6):06d}-{i}" for i in range(n)]
    rng.shuffle(ids)
    return [Doc(i, " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))) for i in ids]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_identical_to_reference_with_ties(backend, method):
    docs = tie_corpus()
    idx = BM25Index.build(docs, stemmer=None, stopwords=None, method=method, backend=backend,
                          show_progress=False)
    queries = [Query(f"q{i}", t) for i, t in enumerate(
        ["alpha", "beta gamma", "omega omega delta", "alpha beta gamma delta omega", "zzz"])]
    for k in (1, 7, 50, 1000):
        run = idx.search(queries, k=k, show_progress=False)
        assert list(run) == [q.id for q in queries]
        assert idx.search(queries, k=k, n_threads=2, show_progress=False) == run
        for q in queries:
            r = run[q.id]
            assert isinstance(r, Ranking)
            assert not isinstance(r, ArrayRanking) or not r.materialized
            want = reference(idx, q.text, k)
            assert r.doc_ids == [d for d, _ in want]
            assert len(r) == len(want)
            assert as_pairs(r) == want  # exact floats: the same float32 scores
            assert all(type(d.score) is float for d in r)


@pytest.mark.slow
@needs_numba
def test_numba_and_numpy_agree_with_raw_bm25s_on_dl19(dl19):
    docs = list(dl19.docs.values())
    fast = BM25Index.build(docs, backend="numba", show_progress=False)
    slow = BM25Index.build(docs, backend="numpy", show_progress=False)
    queries = list(dl19.queries.values())
    a = fast.search(queries, k=100, show_progress=False)
    b = slow.search(queries, k=100, show_progress=False)
    assert a == b  # ArrayRanking == ArrayRanking, docs and scores
    # raw bm25s-numba: the same float32 scores, only the order within ties may differ
    toks = fast.tokenize_queries([q.text for q in queries])
    vocab = fast._bm25.vocab_dict
    raw = fast._bm25.retrieve([[vocab[w] for w in t if w in vocab] for t in toks], k=100,
                              show_progress=False, n_threads=1)
    for q, scores in zip(queries, raw.scores, strict=True):
        got = [d.score for d in a[q.id]]
        assert got == [float(s) for s in scores if s > 0]
        assert as_pairs(a[q.id]) == reference(fast, q.text, 100)


def test_array_ranking_is_a_ranking():
    ids = np.array(["b", "a", "c"], dtype=object)
    sc = np.array([2.5, 1.0, 1.0], dtype=np.float32)
    r = ArrayRanking.from_arrays("q", ids, sc, "s")
    plain = Ranking("q", [ScoredDoc("a", 1.0), ScoredDoc("c", 1.0), ScoredDoc("b", 2.5)], "s")
    assert len(r) == 3 and r.doc_ids == ["b", "a", "c"] and not r.materialized
    assert r.scores() == {"b": 2.5, "a": 1.0, "c": 1.0}
    top = r.top(2)
    assert isinstance(top, ArrayRanking) and top.doc_ids == ["b", "a"] and not r.materialized
    assert r.top(0).doc_ids == [] and r.top(None).doc_ids == ["b", "a", "c"]
    assert pickle.loads(pickle.dumps(r)) == r and not r.materialized
    assert r == plain and plain == r and r != Ranking("q", [], "s")
    assert r.docs == plain.docs and r.materialized
    r.docs.append(ScoredDoc("d", 0.5))  # once materialized, the list is the ranking
    assert r.doc_ids == ["b", "a", "c", "d"] and len(r) == 4
    assert pickle.loads(pickle.dumps(r)).doc_ids == ["b", "a", "c", "d"]
    # the Ranking constructor path still validates
    with pytest.raises(Exception, match="duplicate"):
        ArrayRanking("q", [ScoredDoc("a", 1.0), ScoredDoc("a", 2.0)])
    assert ArrayRanking("q", [ScoredDoc("a", 1.0), ScoredDoc("b", 2.0)]).doc_ids == ["b", "a"]


_CHILD = textwrap.dedent("""
    import json, sys
    from rankstack.records import Doc, Query
    from rankstack.retrieve import BM25Index
    from rankstack.retrieve import _bm25_numba
    idx = BM25Index.load(sys.argv[1])
    run = idx.search([Query("q", "apple banana")], k=3, show_progress=False)
    print(json.dumps({"backend": idx.backend, "ids": run["q"].doc_ids,
                      **_bm25_numba.cache_stats()}))
""")


def _child(index_dir, env) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(index_dir)], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_numba
def test_a_second_process_loads_the_compiled_kernel(tmp_path):
    docs = [Doc("d1", "apple banana"), Doc("d2", "apple"), Doc("d3", "cherry")]
    ix = tmp_path / "ix"
    BM25Index.build(docs, stemmer=None, stopwords=None, backend="numba",
                    show_progress=False).save(ix)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    first = _child(ix, env)
    assert first["backend"] == "numba" and first["ids"] == ["d1", "d2"]
    assert list((tmp_path / "numba-cache").rglob("*search_batch*.nbi"))
    second = _child(ix, env)
    assert second["ids"] == ["d1", "d2"]
    assert second["cache_misses"] == 0 and second["cache_hits"] >= 1  # nothing compiled


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_recorded_and_default_on_load(tmp_path, backend):
    docs = [Doc("d1", "apple banana"), Doc("d2", "apple")]
    BM25Index.build(docs, stemmer=None, stopwords=None, backend=backend,
                    show_progress=False).save(tmp_path / "ix")
    m = json.loads((tmp_path / "ix" / "rankstack.json").read_text())
    assert m["backend"] == backend and m["backend_setting"] == backend
    assert BM25Index.load(tmp_path / "ix").backend == backend
    assert BM25Index.load(tmp_path / "ix", backend="numpy").backend == "numpy"


def test_cli_retrieve_backend_flag(tmp_path, capsys):
    from rankstack.cli import main
    from rankstack.io import read_run

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in
                              enumerate(["apple banana", "apple", "cherry"])))
    topics = tmp_path / "t.tsv"
    topics.write_text("1\tapple\n2\tcherry pie\n")
    ix = tmp_path / "ix"
    assert main(["index", "--corpus", str(corpus), "--index-dir", str(ix),
                 "--backend", "numpy"]) == 0
    assert json.loads((ix / "rankstack.json").read_text())["backend"] == "numpy"
    runs = {}
    for be in ["numpy"] + (["numba"] if numba_available() else []):
        out = tmp_path / f"{be}.run"
        assert main(["retrieve", "--index-dir", str(ix), "--queries", str(topics),
                     "--backend", be, "--out", str(out)]) == 0
        assert f"backend={be}" in capsys.readouterr().err
        runs[be] = read_run(out).to_dict()
    assert all(r == runs["numpy"] for r in runs.values())
    assert list(runs["numpy"]["1"]) == ["d1", "d0"]  # the shorter 'apple' doc first
