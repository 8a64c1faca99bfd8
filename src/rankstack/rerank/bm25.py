"""``family: bm25``: BM25 over each query's candidates' own text (no index needed).

Only the candidates of each query are scored, from their own text. The collection statistics
(document frequencies, average length) come from ``stats``: ``run`` (default) - the union of
the candidate passages of every query of the run, a pooled mini-collection (the same whatever
the grouping or resumption); ``query`` - each query's own candidates, as PyTerrier's text
scorer does per query (on DL19's BM25 top-100 this is much weaker: every candidate holds the
query's main terms, so their IDF nearly vanishes). Tokenized as the BM25 index of
:mod:`rankstack.retrieve.bm25` (lower case, split, stop words removed, stemmed), scored by
bm25s. A baseline on any candidate set is one command::

    rankstack rerank --family bm25 --candidates dl19 --out runs/dl19-bm25-rerank.run

Candidates with no query term score 0 (their input order breaks the tie only through doc id,
as for every score tie: counted in the report's ``ties``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rankstack.errors import ConfigError
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker
from rankstack.rerank.report import RerankReport


class BM25Reranker(RunReranker):
    """BM25 scores of each query's candidates among themselves (see module doc)."""

    score_kind = "bm25"

    def __init__(self, *, k1: float = 0.9, b: float = 0.4, method: str = "lucene",
                 stemmer: str | None = "english", stopwords: str | list[str] | None = "en",
                 stats: str = "run", depth: int | None = 100, on_missing: OnMissing = "raise",
                 show_progress: bool = True, chunk_pairs: int = 4096) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress,
                         chunk_pairs=chunk_pairs)
        from rankstack.retrieve.bm25 import _check_stopwords, _import_bm25s, _stemmer

        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"bm25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if stats not in ("run", "query"):
            raise ConfigError(f"bm25 stats must be 'run' or 'query', not {stats!r}")
        self.stats = stats
        self._bm25s = _import_bm25s()
        self.params = {"k1": float(k1), "b": float(b), "method": method, "stemmer": stemmer,
                       "stopwords": _check_stopwords(stopwords)}
        self._stem = _stemmer(stemmer)
        self.name = f"bm25-rerank(k1={k1:g},b={b:g},stats={stats})"
        self._pool: Any = None

    def journal_identity(self) -> dict[str, Any]:
        return {"model": self.name, **self.params, "stats": self.stats}

    def _begin(self, report: RerankReport) -> None:
        self._pool = None
        if self.stats == "run":  # one index over every candidate passage of the run
            docs = {d.id: d for it in self.plan for d in it.docs}
            ids = list(docs)
            self._pool = (self._index(self._tokens([docs[i].full_text for i in ids])),
                          {d: i for i, d in enumerate(ids)})

    def _index(self, corpus: list[list[str]]) -> tuple[Any, set[str]]:
        p = self.params
        bm = self._bm25s.BM25(k1=p["k1"], b=p["b"], method=p["method"])
        vocab = {t for d in corpus for t in d}
        if vocab:
            bm.index(corpus, show_progress=False)
        return bm, vocab

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        from rankstack.retrieve.bm25 import TOKEN_PATTERN

        tok = self._bm25s.tokenize(texts, lower=True, token_pattern=TOKEN_PATTERN,
                                   stopwords=self.params["stopwords"], stemmer=self._stem,
                                   show_progress=False, return_ids=False)
        return [list(t) for t in tok]

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        out: list[Sequence[float]] = []
        for it in items:
            n = len(it.ids)
            if self._pool is not None:
                (bm, vocab), pos = self._pool
            elif n:
                (bm, vocab), pos = self._index(self._tokens(it.texts)), None
            terms = [t for t in dict.fromkeys(self._tokens([it.query])[0]) if n and t in vocab]
            if not terms:
                out.append([0.0] * n)
            else:
                scores = np.asarray(bm.get_scores(terms), dtype=np.float64)
                out.append(scores.tolist() if pos is None else
                           [float(scores[pos[d]]) for d in it.ids])
            report.pairs_scored += n
            advance(n)
        return out


def build_bm25(spec: Any) -> BM25Reranker:
    if spec.model is not None or spec.backend is not None:
        raise ConfigError("family 'bm25' takes no model or backend (settings: k1, b, "
                          "stemmer, stopwords)")
    import inspect

    takes = set(inspect.signature(BM25Reranker.__init__).parameters) - {"self"}
    unknown = sorted(set(spec.settings) - takes)
    if unknown:
        raise ConfigError(f"family 'bm25' does not take setting(s) {', '.join(unknown)}; it "
                          f"takes: {', '.join(sorted(takes))}")
    return BM25Reranker(**spec.settings)
