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
