"""Typed records shared by every stage: Query, Doc, ScoredDoc, Ranking, Run, Qrels.

Score semantics: a :class:`Ranking` carries the name of what produced its scores
(``scorer``); scores are only comparable within one Ranking. Higher is better.

One tie-break rule everywhere (:func:`rank_key`): score descending, then doc id ascending
(plain string order). Rankings are always kept in that order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rankstack.errors import InputError


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """Title and text joined the way rankstack feeds passages to models."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


def unique_docs(docs: Iterable[Doc]) -> Iterator[Doc]:
    """Yield ``docs``, raising InputError (``line`` = 1-based position) on an empty id, an id
    with a line break (unwritable to plain id files) or a repeated id."""
    seen: set[str] = set()
    for n, d in enumerate(docs, 1):
        if not d.id:
            raise InputError("empty doc id", line=n, field="id")
        if "\n" in d.id or "\r" in d.id:
            raise InputError(f"doc id {d.id!r} contains a line break", line=n, field="id")
        if d.id in seen:
            raise InputError(f"duplicate doc id {d.id!r}", line=n, field="id")
        seen.add(d.id)
        yield d


@dataclass(frozen=True, slots=True)
class ScoredDoc:
    doc_id: str
    score: float


def rank_key(doc: ScoredDoc) -> tuple[float, str]:
    """Sort key of the one tie-break rule: score descending, then doc id ascending."""
    return (-doc.score, doc.doc_id)


@dataclass(slots=True)
class Ranking:
    """One query's candidates in rank order, with the name of what scored them."""

    query_id: str
    docs: list[ScoredDoc]
    scorer: str = "unknown"

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for d in self.docs:
            if d.doc_id in seen:
                raise InputError(
                    f"duplicate doc id {d.doc_id!r} in ranking", field=f"query {self.query_id}"
                )
            if not math.isfinite(d.score):
                raise InputError(
                    f"non-finite score {d.score!r} for doc {d.doc_id!r}",
                    field=f"query {self.query_id}",
                )
            seen.add(d.doc_id)
        self.docs.sort(key=rank_key)

    @classmethod
    def from_scores(
        cls, query_id: str, scores: Mapping[str, float] | Iterable[tuple[str, float]], scorer: str
    ) -> Ranking:
        items = scores.items() if isinstance(scores, Mapping) else scores
        return cls(query_id, [ScoredDoc(str(d), float(s)) for d, s in items], scorer)

    @classmethod
    def from_order(cls, query_id: str, doc_ids: Iterable[str], scorer: str) -> Ranking:
        """A ranking from an ordered list of ids; scores are ``n - position`` (so rank 1 = n)."""
        ids = list(doc_ids)
        n = len(ids)
        return cls(query_id, [ScoredDoc(d, float(n - i)) for i, d in enumerate(ids)], scorer)

    def __len__(self) -> int:
        return len(self.docs)

    def __iter__(self) -> Iterator[ScoredDoc]:
        return iter(self.docs)

    @property
    def doc_ids(self) -> list[str]:
        return [d.doc_id for d in self.docs]

    def scores(self) -> dict[str, float]:
        return {d.doc_id: d.score for d in self.docs}

    def top(self, k: int | None) -> Ranking:
        docs = self.docs if k is None else self.docs[:k]
        return Ranking(self.query_id, list(docs), self.scorer)


_UNSET = object()


class ArrayRanking(Ranking):
    """A :class:`Ranking` backed by two arrays already in :func:`rank_key` order.

    Made by producers of many rankings (BM25 search) so no per-hit Python object exists on
    their hot path: ``len``, ``doc_ids``, ``scores()`` and ``top()`` read the arrays, and the
    :class:`ScoredDoc` list is built the first time ``.docs`` is read (from then on it is
    the ranking, as in a plain Ranking: mutating it works as before). Compares equal to a
    plain Ranking with the same query, docs and scorer.
    """

    __slots__ = ("_ids", "_scores", "_docs")

    def __init__(self, query_id: str, docs: list[ScoredDoc] | None = None,
                 scorer: str = "unknown") -> None:
        # Same signature as Ranking (dataclasses.replace, copy); from_arrays is the fast path.
        self._ids = self._scores = None
        self._docs = _UNSET
        Ranking.__init__(self, query_id, list(docs or []), scorer)

    @classmethod
    def from_arrays(cls, query_id: str, ids: Any, scores: Any, scorer: str) -> ArrayRanking:
        """Trusted constructor: ``ids`` (array of str) and ``scores`` (array of finite floats)
        must already be distinct and in rank_key order; nothing is checked or sorted."""
        r = cls.__new__(cls)
        r.query_id, r.scorer = query_id, scorer
        r._ids, r._scores, r._docs = ids, scores, _UNSET
        return r

    @property  # type: ignore[override]
    def docs(self) -> list[ScoredDoc]:
        if self._docs is _UNSET:
            ids = _tolist(self._ids) if self._ids is not None else []
            scores = _tolist(self._scores) if self._scores is not None else []
            self._docs = list(map(ScoredDoc, ids, map(float, scores)))
            self._ids = self._scores = None
        return self._docs  # type: ignore[return-value]

    @docs.setter
    def docs(self, value: list[ScoredDoc]) -> None:
        self._docs = value
        self._ids = self._scores = None

    @property
    def materialized(self) -> bool:
        """True once the ScoredDoc list exists (``.docs`` was read or set)."""
        return self._docs is not _UNSET

    def __len__(self) -> int:
        return len(self._ids) if self._docs is _UNSET and self._ids is not None \
            else len(self.docs)

    @property
    def doc_ids(self) -> list[str]:
        if self._docs is _UNSET and self._ids is not None:
            return _tolist(self._ids)
        return [d.doc_id for d in self.docs]

    def scores(self) -> dict[str, float]:
        if self._docs is _UNSET and self._ids is not None:
            return dict(zip(_tolist(self._ids), map(float, _tolist(self._scores)), strict=True))
        return {d.doc_id: d.score for d in self.docs}

    def top(self, k: int | None) -> Ranking:
        if self._docs is _UNSET and self._ids is not None:
            sl = slice(None) if k is None else slice(0, max(k, 0))
            return ArrayRanking.from_arrays(self.query_id, self._ids[sl], self._scores[sl],
                                            self.scorer)
        return Ranking.top(self, k)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranking):
            return NotImplemented
        if (self.query_id, self.scorer) != (other.query_id, other.scorer):
            return False
        if isinstance(other, ArrayRanking) and not (self.materialized or other.materialized):
            return (self.doc_ids == other.doc_ids
                    and list(map(float, _tolist(self._scores)))
                    == list(map(float, _tolist(other._scores))))
        return self.docs == other.docs

    __hash__ = None  # type: ignore[assignment]  # like Ranking (a mutable dataclass)

    def __repr__(self) -> str:
        return f"ArrayRanking(query_id={self.query_id!r}, docs={self.docs!r}, " \
               f"scorer={self.scorer!r})"

    def __reduce__(self):
        if self._docs is _UNSET and self._ids is not None:
            return (ArrayRanking.from_arrays, (self.query_id, self._ids, self._scores,
                                               self.scorer))
        return (ArrayRanking, (self.query_id, self.docs, self.scorer))


def _tolist(a: Any) -> list:
    return a.tolist() if hasattr(a, "tolist") else list(a)


@dataclass(slots=True)
class Run(Mapping[str, Ranking]):
    """Query id -> Ranking. ``name`` is the TREC run tag."""

    rankings: dict[str, Ranking] = field(default_factory=dict)
    name: str = "rankstack"

    def __getitem__(self, qid: str) -> Ranking:
        return self.rankings[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rankings)

    def __len__(self) -> int:
        return len(self.rankings)

    def add(self, ranking: Ranking) -> None:
        if ranking.query_id in self.rankings:
            raise InputError(f"query {ranking.query_id!r} already has a ranking in run {self.name!r}")
        self.rankings[ranking.query_id] = ranking

    @property
    def n_pairs(self) -> int:
        return sum(len(r) for r in self.rankings.values())

    def top(self, k: int | None) -> Run:
        return Run({q: r.top(k) for q, r in self.rankings.items()}, self.name)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}``, the shape pytrec_eval / ir_measures take."""
        return {q: r.scores() for q, r in self.rankings.items()}

    @classmethod
    def from_dict(cls, scores: Mapping[str, Mapping[str, float]], name: str = "rankstack",
                  scorer: str = "unknown") -> Run:
        return cls({q: Ranking.from_scores(q, s, scorer) for q, s in scores.items()}, name)


@dataclass(slots=True)
class Qrels(Mapping[str, dict[str, int]]):
    """Query id -> {doc id: graded relevance}.

    ``binary_rel``: the minimum grade binary measures (RR, AP, recall, ...) and training count
    as relevant, when the judgments' source defines one (TREC DL: 2); None = not stated (1 is
    used, with a warning for graded judgments).
    """

    judgments: dict[str, dict[str, int]] = field(default_factory=dict)
    name: str = "qrels"
    binary_rel: int | None = None

    def __getitem__(self, qid: str) -> dict[str, int]:
        return self.judgments[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.judgments)

    def __len__(self) -> int:
        return len(self.judgments)

    @property
    def n_judgments(self) -> int:
        return sum(len(v) for v in self.judgments.values())

    def relevant(self, qid: str, binary_rel: int | None = None) -> list[str]:
        """Doc ids judged >= ``binary_rel`` (default: the qrels' own, else 1)."""
        rel = binary_rel if binary_rel is not None else (self.binary_rel or 1)
        return [d for d, g in self.judgments.get(qid, {}).items() if g >= rel]
