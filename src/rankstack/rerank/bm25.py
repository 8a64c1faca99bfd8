"""``family: bm25``: BM25 over each query's candidates' own text (no index needed).

Like PyTerrier's text scorer: the candidates of one query are the collection, so document
frequencies and the average length come from that candidate set (``stats: query``, default;
independent of how queries are batched). Tokenized as the BM25 index of
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
                 depth: int | None = 100, on_missing: OnMissing = "raise",
                 show_progress: bool = True, chunk_pairs: int = 4096) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress,
                         chunk_pairs=chunk_pairs)
        from rankstack.retrieve.bm25 import _check_stopwords, _import_bm25s, _stemmer

        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"bm25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self._bm25s = _import_bm25s()
        self.params = {"k1": float(k1), "b": float(b), "method": method, "stemmer": stemmer,
                       "stopwords": _check_stopwords(stopwords)}
        self._stem = _stemmer(stemmer)
        self.name = f"bm25-rerank(k1={k1:g},b={b:g})"

    def journal_identity(self) -> dict[str, Any]:
        return {"model": self.name, **self.params}

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
            if n == 0:
                out.append([])
                continue
            corpus = self._tokens(it.texts)
            query = self._tokens([it.query])[0]
            terms = [t for t in dict.fromkeys(query) if any(t in d for d in corpus)]
            if not terms or all(len(d) == 0 for d in corpus):
                out.append([0.0] * n)
            else:
                p = self.params
                bm = self._bm25s.BM25(k1=p["k1"], b=p["b"], method=p["method"])
                bm.index(corpus, show_progress=False)
                scores = bm.get_scores(terms)
                out.append(np.asarray(scores, dtype=np.float64).tolist())
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
