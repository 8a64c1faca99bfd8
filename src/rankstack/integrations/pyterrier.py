"""rankstack inside PyTerrier pipelines (extra ``pyterrier``: ``pip install rankstack[pyterrier]``).

PyTerrier's core (``pyterrier`` >= 1.0) needs no Java for pure-Python transformers, so any
rankstack re-ranker, BM25 index or dense index becomes a ``pt.Transformer``::

    import pyterrier as pt
    from rankstack.integrations.pyterrier import RankstackReranker, dataset_frames

    topics, bm25_res, qrels = dataset_frames("dl19")       # rankstack's DL19 candidates
    bm25 = pt.Transformer.from_df(bm25_res)
    minilm = RankstackReranker({"model": "bundled:all-MiniLM-L6-v2", "family": "bi-encoder"})
    pt.Experiment([bm25, bm25 >> minilm], topics, qrels, eval_metrics=["nDCG@10"])

Frames follow PyTerrier's conventions: queries have ``qid``, ``query``; results add
``docno``, ``score``, ``rank`` (0-based, by score descending) and usually ``text``. A
re-ranker reads ``qid, query, docno, text`` (and ``score`` or ``rank`` for the input order),
re-ranks each query's top ``depth`` with rankstack's policies (candidates below depth follow
in their input order), and returns the same rows and extra columns with new ``score`` and
``rank``, sorted by ``qid`` then ``rank``. A document without text is an InputError naming
the column (rankstack never re-ranks an empty passage silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rankstack.errors import ConfigError, InputError, require
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc

pt = require("pyterrier", "pyterrier", "PyTerrier pipelines", package="pyterrier")
pd = require("pandas", "pyterrier", "PyTerrier pipelines")

if TYPE_CHECKING:
    import pandas


def _need(df: pandas.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what}: the frame lacks column(s) {', '.join(missing)} (has "
                         f"{', '.join(map(str, df.columns))})", field=missing[0])


def frame_to_run(df: pandas.DataFrame, *, text_field: str = "text", name: str = "pyterrier"
                 ) -> tuple[Run, dict[str, Query], dict[str, Doc]]:
    """A results frame -> (Run, queries, docs). The input order is ``score`` (if present),
    else ``rank``; rankstack's tie-break (doc id ascending) applies to equal scores."""
    _need(df, ["qid", "query", "docno"], "results frame")
    if "score" not in df.columns and "rank" not in df.columns:
        raise InputError("results frame: needs a 'score' or a 'rank' column for the input "
                         "order", field="score")
    queries: dict[str, Query] = {}
    docs: dict[str, Doc] = {}
    rankings: dict[str, list[ScoredDoc]] = {}
    n = len(df)
    order = (df["score"].astype(float) if "score" in df.columns
             else -df["rank"].astype(float)).tolist()
    texts = df[text_field].tolist() if text_field in df.columns else [None] * n
    for qid, query, docno, score, text in zip(df["qid"].astype(str), df["query"].astype(str),
                                              df["docno"].astype(str), order, texts,
                                              strict=True):
        if queries.setdefault(qid, Query(qid, query)).text != query:
            raise InputError(f"query {qid!r} has two different texts in the frame",
                             field="query")
        rankings.setdefault(qid, []).append(ScoredDoc(docno, score))
        if text is not None and not (isinstance(text, float) and text != text):  # None/NaN
            docs[docno] = Doc(docno, str(text))
    run = Run({q: Ranking(q, ds, name) for q, ds in rankings.items()}, name=name)
    return run, queries, docs


def run_to_frame(run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc] | None = None
                 ) -> pandas.DataFrame:
    """A Run -> results frame (``qid, query, docno, score, rank`` and ``text`` if ``docs``)."""
    rows = []
    for qid, ranking in run.rankings.items():
        q = queries[qid].text if qid in queries else ""
        for rank, sd in enumerate(ranking.docs):
            row = {"qid": qid, "query": q, "docno": sd.doc_id, "score": sd.score, "rank": rank}
            if docs is not None and sd.doc_id in docs:
                row["text"] = docs[sd.doc_id].full_text
            rows.append(row)
    cols = ["qid", "query", "docno", "score", "rank"] + (["text"] if docs is not None else [])
    return pd.DataFrame(rows, columns=cols)


class RankstackReranker(pt.Transformer):
    """Any rankstack re-ranker as a PyTerrier re-ranking transformer.

    ``reranker``: a re-ranker object (``.rerank(run, queries, docs, depth=...) -> Run``) or a
    spec mapping (``model``, ``family``, ``backend``, ``settings``). ``depth``: re-rank the
    top N of each query (None: the re-ranker's default).
    """

    def __init__(self, reranker: Any, *, depth: int | None = None,
                 text_field: str = "text") -> None:
        if isinstance(reranker, Mapping):
            from rankstack.rerank import load_reranker

            reranker = load_reranker(reranker)
        if not callable(getattr(reranker, "rerank", None)):
            raise ConfigError(f"{type(reranker).__name__} is not a re-ranker (no .rerank)")
        self.reranker = reranker
        self.depth = depth
        self.text_field = text_field

    def __repr__(self) -> str:
        return f"RankstackReranker({getattr(self.reranker, 'name', self.reranker)!r})"

    def transform(self, inp: pandas.DataFrame) -> pandas.DataFrame:
        _need(inp, ["qid", "query", "docno", self.text_field], "RankstackReranker input")
        if len(inp) == 0:
            return inp.assign(score=pd.Series(dtype=float), rank=pd.Series(dtype=int))
        run, queries, docs = frame_to_run(inp, text_field=self.text_field)
        out = self.reranker.rerank(run, queries, docs, depth=self.depth)
        scores = {(q, sd.doc_id): (sd.score, rank) for q, r in out.rankings.items()
                  for rank, sd in enumerate(r.docs)}
        res = inp.copy()
        res["qid"] = res["qid"].astype(str)
        res["docno"] = res["docno"].astype(str)
        keys = list(zip(res["qid"], res["docno"], strict=True))
        lost = [k for k in keys if k not in scores]
        if lost:
            raise InputError(f"{len(lost)} row(s) were not returned by the re-ranker, e.g. "
                             f"query {lost[0][0]!r} doc {lost[0][1]!r}", field="docno")
        res["score"] = [scores[k][0] for k in keys]
        res["rank"] = [scores[k][1] for k in keys]
        return res.sort_values(["qid", "rank"], kind="stable").reset_index(drop=True)


class RankstackRetriever(pt.Transformer):
    """A rankstack index (``BM25Index``, ``DenseIndex``: anything with
    ``.search(queries, k, show_progress=...) -> Run``) as a PyTerrier retriever.

    Input: ``qid, query``; output adds ``docno, score, rank`` and, with ``docs`` (doc id ->
    Doc, e.g. ``read_corpus(path)``), the ``text`` a re-ranker needs.
    """

    def __init__(self, index: Any, *, k: int = 100, docs: Mapping[str, Doc] | None = None
                 ) -> None:
        if not callable(getattr(index, "search", None)):
            raise ConfigError(f"{type(index).__name__} is not a rankstack index (no .search)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        self.index, self.k, self.docs = index, k, docs

    @classmethod
    def bm25(cls, index_dir: str, *, k: int = 100, docs: Mapping[str, Doc] | None = None
             ) -> RankstackRetriever:
        """A ``rankstack index`` BM25 directory."""
        from rankstack.retrieve.bm25 import BM25Index

        return cls(BM25Index.load(index_dir), k=k, docs=docs)

    @classmethod
    def dense(cls, index_dir: str, *, k: int = 100, model: str | None = None,
              docs: Mapping[str, Doc] | None = None) -> RankstackRetriever:
        """A dense index directory, with the encoder its manifest records (or ``model``)."""
        from rankstack.retrieve.dense import DenseIndex, load_encoder_for_index

        return cls(DenseIndex.load(index_dir, load_encoder_for_index(index_dir, model)), k=k,
                   docs=docs)

    def transform(self, inp: pandas.DataFrame) -> pandas.DataFrame:
        _need(inp, ["qid", "query"], "RankstackRetriever input")
        queries = {str(q): Query(str(q), str(t)) for q, t in zip(inp["qid"], inp["query"],
                                                                 strict=True)}
        run = self.index.search(queries, self.k, show_progress=False)
        return run_to_frame(run, queries, self.docs)


def dataset_frames(name: str) -> tuple[pandas.DataFrame, pandas.DataFrame, pandas.DataFrame]:
    """(topics, candidate results with text, qrels) of a rankstack dataset, as PyTerrier
    frames (qrels columns ``qid, docno, label``)."""
    from rankstack.datasets import load_dataset

    ds = load_dataset(name)
    if ds.run is None:
        raise ConfigError(f"dataset {name!r} has no candidate run")
    qids = list(ds.run.rankings)
    topics = pd.DataFrame({"qid": qids, "query": [ds.queries[q].text for q in qids]})
    results = run_to_frame(ds.run, ds.queries, ds.docs)
    qrels = pd.DataFrame(
        [(q, d, g) for q, j in (ds.qrels.judgments.items() if ds.qrels else []) for d, g in
         j.items()], columns=["qid", "docno", "label"])
    return topics, results, qrels
