"""Training groups ``(query, [docs], targets)`` built from runs, for pairwise/listwise losses.

Two builders, one interface:

* :class:`QrelsGroupBuilder`: a candidate run (hard negatives) labelled by qrels. Strategies
  ``single_relevant`` (one relevant document at index 0, then N-1 negatives sampled from the
  run), ``top`` (the run's top N with their qrels labels), ``random`` (N random candidates),
  ``top_and_random`` (the top ceil(N/2) plus floor(N/2) random others). Negatives are
  candidates whose grade is below ``binary_rel`` (unjudged = 0). Targets are qrels grades.
* :class:`TeacherGroupBuilder`: a teacher :class:`~rankstack.records.Run` (e.g. from
  ``rankstack teach``). Strategies ``top`` and ``top_and_random`` over the teacher's top
  ``depth`` (Rank-DistiLLM samples from the teacher's top-k). Targets are
  ``depth - rank + 1`` (:func:`~rankstack.train.losses.targets_from_ranks`, ``targets="rank"``)
  or the teacher's scores (``targets="score"``).

Documents in a group keep run / teacher order (``single_relevant``: the relevant one first).

**Unusable queries are never dropped silently.** Each skipped query is counted under one
reason in :attr:`GroupBuilder.stats` (:class:`GroupStats`, see :data:`SKIP_REASONS`) and the
counts are logged when the builder is created. Candidates without text in the corpus are left
out of the pools and counted (``on_missing_doc="skip_doc"``, default) or make their query
unusable (``"skip_query"``).

**Determinism and resuming.** Which queries are usable does not depend on randomness. The
documents of group ``i`` in epoch ``e`` depend only on ``(seed, e, query id)``; the visiting
order of epoch ``e`` is a permutation seeded by ``(seed, e)`` (:meth:`GroupBuilder.epoch_order`).
To resume an interrupted epoch after ``k`` groups, call ``iter_groups(epoch=e, start=k)``: it
yields exactly the groups an uninterrupted pass would have yielded from position ``k`` on.
With a DataLoader use :class:`GroupDataset` + :class:`GroupSampler` (``set_epoch`` and
``state_dict`` / ``load_state_dict`` hold ``(epoch, start)``) and :func:`collate_groups`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from rankstack.errors import ConfigError
from rankstack.records import Doc, Qrels, Query, Run
from rankstack.train.losses import targets_from_ranks

log = logging.getLogger(__name__)

QrelsStrategy = Literal["single_relevant", "top", "random", "top_and_random"]
TeacherStrategy = Literal["top", "top_and_random"]
MissingDocPolicy = Literal["skip_doc", "skip_query"]

#: reason -> meaning, for every way a query can fail to form a group
SKIP_REASONS: dict[str, str] = {
    "missing_query_text": "the query id has no text in the given queries",
    "no_candidates": "the query has no (or an empty) ranking in the run",
    "no_relevant": "no judged document with relevance >= binary_rel",
    "relevant_not_in_candidates": "relevant documents exist, but none among the usable "
                                  "candidates (strategies top / random / top_and_random)",
    "no_relevant_in_top": "strategy 'top': relevant candidates exist, none in the top N",
    "relevant_missing_from_corpus": "every relevant document lacks text in the corpus "
                                    "(strategy single_relevant)",
    "doc_missing_from_corpus": "a candidate lacks text in the corpus and "
                               "on_missing_doc='skip_query'",
    "too_few_candidates": "fewer usable documents than N (pad=False), or fewer than 2",
}


@dataclass(frozen=True, slots=True)
class TrainGroup:
    """One training example: a query, its documents (texts) and one target per document.

    ``targets`` are higher-is-better floats (qrels grades, ``depth - rank + 1`` or teacher
    scores); ``doc_ids[i]``, ``docs[i]`` and ``targets[i]`` describe the same document.
    """

    query_id: str
    query: str
    doc_ids: tuple[str, ...]
    docs: tuple[str, ...]
    targets: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.doc_ids)


@dataclass
class GroupStats:
    """What a builder made of its input: usable groups and skipped queries per reason."""

    source: str
    strategy: str
    n_docs: int
    n_queries: int = 0
    n_groups: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_query_ids: dict[str, list[str]] = field(default_factory=dict)
    #: documents left out of the pools for lack of text (candidates, and for
    #: single_relevant also judged-relevant documents outside the run)
    docs_missing_from_corpus: int = 0
    n_short_groups: int = 0  # usable groups with fewer than n_docs documents (pad=True)

    def skip(self, qid: str, reason: str) -> None:
        assert reason in SKIP_REASONS, reason
        self.skipped[reason] += 1
        self.skipped_query_ids.setdefault(reason, []).append(qid)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "strategy": self.strategy, "n_docs": self.n_docs,
                "n_queries": self.n_queries, "n_groups": self.n_groups,
                "skipped": dict(sorted(self.skipped.items())),
                "docs_missing_from_corpus": self.docs_missing_from_corpus,
                "n_short_groups": self.n_short_groups}

    def summary(self) -> str:
        parts = [f"{self.n_groups}/{self.n_queries} queries form {self.source} groups "
                 f"(strategy={self.strategy}, n_docs={self.n_docs})"]
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{r}={n}" for r, n in
                                                 sorted(self.skipped.items())))
        if self.docs_missing_from_corpus:
            parts.append(f"{self.docs_missing_from_corpus} candidate(s) without text left out")
        if self.n_short_groups:
            parts.append(f"{self.n_short_groups} group(s) shorter than n_docs (padded)")
        return "; ".join(parts)

    def log(self, logger: logging.Logger = log) -> None:
        level = logging.WARNING if self.skipped or self.docs_missing_from_corpus \
            else logging.INFO
        logger.log(level, "%s", self.summary())


def _text(value: Query | Doc | str) -> str:
    if isinstance(value, Doc):
        return value.full_text
    if isinstance(value, Query):
        return value.text
    return str(value)


class GroupBuilder:
    """Shared machinery: usable queries, per-epoch sampling, deterministic order, resuming.

    Subclasses fill :attr:`query_ids` and :attr:`stats` in ``__init__`` (through
    :meth:`_plan`) and implement :meth:`_sample`.
    """

    def __init__(self, queries: Mapping[str, Query | str], docs: Mapping[str, Doc | str],
                 *, n_docs: int, strategy: str, strategies: Sequence[str], seed: int,
                 pad: bool, on_missing_doc: MissingDocPolicy, depth: int | None,
                 source: str) -> None:
        owner = type(self).__name__
        if isinstance(n_docs, bool) or not isinstance(n_docs, int) or n_docs < 2:
            raise ConfigError(f"{owner}: n_docs must be an int >= 2, got {n_docs!r}")
        if strategy not in strategies:
            raise ConfigError(f"{owner}: strategy must be one of {', '.join(strategies)}, "
                              f"got {strategy!r}")
        if on_missing_doc not in ("skip_doc", "skip_query"):
            raise ConfigError(f"{owner}: on_missing_doc must be 'skip_doc' or 'skip_query', "
                              f"got {on_missing_doc!r}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                                  or depth < 1):
            raise ConfigError(f"{owner}: depth must be None or an int >= 1, got {depth!r}")
        if not isinstance(seed, int):
            raise ConfigError(f"{owner}: seed must be an int, got {seed!r}")
        self.queries = queries
        self.docs = docs
        self.n_docs = n_docs
        self.strategy = strategy
        self.seed = seed
        self.pad = pad
        self.on_missing_doc = on_missing_doc
        self.depth = depth
        self.stats = GroupStats(source, strategy, n_docs)
        self.query_ids: list[str] = []
        # per usable query: what _sample needs (pools, labels), filled by subclasses
        self._plans: list[Any] = []

    # -- subclass hooks ------------------------------------------------------------------------

    def _sample(self, plan: Any, rng: random.Random) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def _targets(self, plan: Any, doc_ids: list[str]) -> list[float]:  # pragma: no cover
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------------

    def _usable_pool(self, qid: str, doc_ids: Sequence[str]) -> list[str] | None:
        """Candidates with text; None if the query must be skipped (reason recorded)."""
        pool = [d for d in doc_ids if d in self.docs]
        missing = len(doc_ids) - len(pool)
        if missing and self.on_missing_doc == "skip_query":
            self.stats.skip(qid, "doc_missing_from_corpus")
            return None
        self.stats.docs_missing_from_corpus += missing
        return pool

    def _enough(self, qid: str, available: int) -> bool:
        if available < 2 or (available < self.n_docs and not self.pad):
            self.stats.skip(qid, "too_few_candidates")
            return False
        if available < self.n_docs:
            self.stats.n_short_groups += 1
        return True

    def _accept(self, qid: str, plan: Any) -> None:
        self.query_ids.append(qid)
        self._plans.append(plan)

    def _finish(self) -> None:
        self.stats.n_groups = len(self.query_ids)
        self.stats.log()

    def _pick_top_and_random(self, pool: Sequence[str], rng: random.Random) -> list[str]:
        """The first ceil(N/2) of ``pool`` plus floor(N/2) random others, in pool order."""
        n = min(self.n_docs, len(pool))
        n_top = self.n_docs - self.n_docs // 2
        if n <= n_top:
            return list(pool[:n])
        rest = rng.sample(range(n_top, len(pool)), n - n_top)
        return list(pool[:n_top]) + [pool[i] for i in sorted(rest)]

    # -- public API ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of usable queries = groups per epoch."""
        return len(self.query_ids)

    def group(self, index: int, epoch: int = 0) -> TrainGroup:
        """Group of usable query ``index`` in ``epoch`` (a pure function of seed/epoch/query)."""
        if not 0 <= index < len(self.query_ids):
            raise IndexError(f"group index {index} out of range 0..{len(self.query_ids) - 1}")
        qid = self.query_ids[index]
        plan = self._plans[index]
        rng = random.Random(f"{self.seed}/{epoch}/{qid}")
        doc_ids = self._sample(plan, rng)
        return TrainGroup(qid, _text(self.queries[qid]), tuple(doc_ids),
                          tuple(_text(self.docs[d]) for d in doc_ids),
                          tuple(self._targets(plan, doc_ids)))

    def epoch_order(self, epoch: int = 0, shuffle: bool = True) -> list[int]:
        """Visiting order of group indices in ``epoch``: seeded permutation, or 0..n-1."""
        order = list(range(len(self.query_ids)))
        if shuffle:
            random.Random(f"{self.seed}/{epoch}/order").shuffle(order)
        return order

    def iter_groups(self, epoch: int = 0, start: int = 0, shuffle: bool = True
                    ) -> Iterator[TrainGroup]:
        """Yield the groups of ``epoch`` in :meth:`epoch_order`, skipping the first ``start``.

        ``start`` is the number of groups of this epoch already consumed, so an interrupted
        epoch resumes with no group repeated or skipped.
        """
        if start < 0:
            raise ConfigError(f"start must be >= 0, got {start}")
        for i in self.epoch_order(epoch, shuffle)[start:]:
            yield self.group(i, epoch)

    def groups(self, epoch: int = 0) -> list[TrainGroup]:
        """All groups of ``epoch`` in query order (not shuffled), as a list."""
        return [self.group(i, epoch) for i in range(len(self.query_ids))]


@dataclass(frozen=True, slots=True)
class _QrelsPlan:
    pool: tuple[str, ...]  # usable candidates in run order (within depth)
    grades: Mapping[str, int]
    positives: tuple[str, ...]  # single_relevant: relevant docs with text; else relevant in pool
    negatives: tuple[str, ...]  # candidates below binary_rel, run order


class QrelsGroupBuilder(GroupBuilder):
    """Groups from a candidate run labelled by qrels (hard-negative training).

    Args:
        queries: query id -> :class:`Query` (or text).
        docs: doc id -> :class:`Doc` (or text); the corpus the texts come from.
        run: candidate run (e.g. BM25 top-100); only its top ``depth`` per query are used.
        qrels: graded judgments; unjudged documents count as grade 0.
        n_docs: N, documents per group (>= 2).
        strategy: ``single_relevant``, ``top``, ``random`` or ``top_and_random``.
        binary_rel: grade at which a document counts as relevant; lower = negative (default:
            the qrels' own ``Qrels.binary_rel``, else 1).
        depth: candidates considered per query (None = the whole ranking).
        seed: sampling seed.
        pad: allow groups shorter than N (but >= 2); :func:`collate_groups` pads and masks.
        on_missing_doc: ``skip_doc`` (leave the candidate out, count it) or ``skip_query``.
        ensure_relevant: for ``random`` / ``top_and_random``, if a sample has no relevant
            document, its last random pick is replaced by a random relevant candidate.

    Queries of the qrels absent from the run are counted as ``no_candidates``. The relevant
    document of ``single_relevant`` is drawn from all relevant judged documents with text
    (in the run or not); its negatives come from the run.
    """

    STRATEGIES = ("single_relevant", "top", "random", "top_and_random")

    def __init__(self, queries: Mapping[str, Query | str], docs: Mapping[str, Doc | str],
                 run: Run, qrels: Qrels | Mapping[str, Mapping[str, int]], *, n_docs: int = 8,
                 strategy: QrelsStrategy = "single_relevant", binary_rel: int | None = None,
                 depth: int | None = None, seed: int = 0, pad: bool = False,
                 on_missing_doc: MissingDocPolicy = "skip_doc",
                 ensure_relevant: bool = True) -> None:
        super().__init__(queries, docs, n_docs=n_docs, strategy=strategy,
                         strategies=self.STRATEGIES, seed=seed, pad=pad,
                         on_missing_doc=on_missing_doc, depth=depth, source="qrels")
        if binary_rel is None:  # the judgments' own threshold (TREC DL: 2), else 1
            binary_rel = getattr(qrels, "binary_rel", None) or 1
        if isinstance(binary_rel, bool) or not isinstance(binary_rel, int) \
                or binary_rel < 1:
            raise ConfigError(f"QrelsGroupBuilder: binary_rel must be an int >= 1, "
                              f"got {binary_rel!r}")
        self.binary_rel = binary_rel
        self.ensure_relevant = ensure_relevant
        for qid in run:
            self.stats.n_queries += 1
            plan = self._plan_query(qid, run[qid].doc_ids[:depth], qrels.get(qid, {}))
            if plan is not None:
                self._accept(qid, plan)
        for qid in sorted(set(qrels) - set(run)):
            self.stats.n_queries += 1
            self.stats.skip(qid, "no_candidates")
        self._finish()

    def _plan_query(self, qid: str, cands: Sequence[str],
                    grades: Mapping[str, int]) -> _QrelsPlan | None:
        st = self.stats
        if qid not in self.queries:
            st.skip(qid, "missing_query_text")
            return None
        if not cands:
            st.skip(qid, "no_candidates")
            return None
        relevant = sorted(d for d, g in grades.items() if g >= self.binary_rel)
        if not relevant:
            st.skip(qid, "no_relevant")
            return None
        considered = list(cands)
        if self.strategy == "single_relevant":
            in_run = set(cands)
            considered += [d for d in relevant if d not in in_run]
        if self.on_missing_doc == "skip_query" and any(d not in self.docs for d in considered):
            st.skip(qid, "doc_missing_from_corpus")
            return None
        pool = [d for d in cands if d in self.docs]
        st.docs_missing_from_corpus += len(cands) - len(pool)
        negatives = tuple(d for d in pool if grades.get(d, 0) < self.binary_rel)
        if self.strategy == "single_relevant":
            positives = tuple(d for d in relevant if d in self.docs)
            st.docs_missing_from_corpus += sum(1 for d in relevant
                                               if d not in self.docs and d not in in_run)
            if not positives:
                st.skip(qid, "relevant_missing_from_corpus")
                return None
            if not self._enough(qid, 1 + len(negatives)):
                return None
        else:
            rel = set(relevant)
            positives = tuple(d for d in pool if d in rel)
            if not positives:
                st.skip(qid, "relevant_not_in_candidates")
                return None
            if self.strategy == "top" and not any(d in rel for d in pool[:self.n_docs]):
                st.skip(qid, "no_relevant_in_top")
                return None
            if not self._enough(qid, len(pool)):
                return None
        return _QrelsPlan(tuple(pool), dict(grades), positives, negatives)

    def _sample(self, plan: _QrelsPlan, rng: random.Random) -> list[str]:
        n = self.n_docs
        if self.strategy == "single_relevant":
            pos = rng.choice(plan.positives)
            k = min(n - 1, len(plan.negatives))
            picks = sorted(rng.sample(range(len(plan.negatives)), k))
            return [pos] + [plan.negatives[i] for i in picks]
        if self.strategy == "top":
            return list(plan.pool[:n])
        if self.strategy == "random":
            k = min(n, len(plan.pool))
            idx = sorted(rng.sample(range(len(plan.pool)), k))
            fixed = 0
        else:  # top_and_random
            chosen = self._pick_top_and_random(plan.pool, rng)
            pos_of = {d: i for i, d in enumerate(plan.pool)}
            idx = [pos_of[d] for d in chosen]
            fixed = n - n // 2
        if self.ensure_relevant and not any(plan.grades.get(plan.pool[i], 0)
                                            >= self.binary_rel for i in idx):
            taken = set(idx)
            positives = set(plan.positives)
            options = [i for i, d in enumerate(plan.pool) if d in positives and i not in taken]
            # replace the last random pick (never one of the fixed top picks)
            if options and len(idx) > fixed:
                idx[-1] = rng.choice(options)
                idx.sort()
        return [plan.pool[i] for i in idx]

    def _targets(self, plan: _QrelsPlan, doc_ids: list[str]) -> list[float]:
        return [float(plan.grades.get(d, 0)) for d in doc_ids]


@dataclass(frozen=True, slots=True)
class _TeacherPlan:
    pool: tuple[str, ...]  # usable docs in teacher order (within depth)
    ranks: Mapping[str, int]  # 1-based teacher rank (before dropping docs without text)
    scores: Mapping[str, float]


class TeacherGroupBuilder(GroupBuilder):
    """Groups from a teacher run for distillation (Rank-DistiLLM, TWOLAR).

    Args:
        queries: query id -> :class:`Query` (or text).
        docs: doc id -> :class:`Doc` (or text).
        teacher: the teacher's :class:`Run` (rank order = the teacher's order; its scores are
            what ``targets="score"`` uses, so state which teacher produced them).
        n_docs: N, documents per group (>= 2).
        strategy: ``top`` (teacher's top N) or ``top_and_random`` (top ceil(N/2) plus
            floor(N/2) sampled from the rest of the top ``depth``).
        targets: ``rank`` -> ``depth - rank + 1`` (rank = 1-based teacher position);
            ``score`` -> the teacher's score.
        depth: teacher positions considered per query; None = the longest teacher ranking,
            so rank targets are on one scale for every query.
        ties: how ``targets="rank"`` ranks documents the teacher scored equally (duplicate
            passages, mostly): ``ordinal`` (default) -> their positions in the run, so a loss
            learns an order the teacher did not give; ``competition`` -> each gets the best
            position of its tie ("1224"), so their targets are equal and pairwise losses skip
            the pair. Score targets are equal for ties either way.
        seed, pad, on_missing_doc: as in :class:`QrelsGroupBuilder`.

    A document without text keeps its teacher rank for the others' targets (ranks are the
    teacher's), it is only left out of the pool.
    """

    STRATEGIES = ("top", "top_and_random")

    def __init__(self, queries: Mapping[str, Query | str], docs: Mapping[str, Doc | str],
                 teacher: Run, *, n_docs: int = 8, strategy: TeacherStrategy = "top",
                 targets: Literal["rank", "score"] = "rank", depth: int | None = None,
                 seed: int = 0, pad: bool = False,
                 on_missing_doc: MissingDocPolicy = "skip_doc",
                 ties: Literal["ordinal", "competition"] = "ordinal") -> None:
        super().__init__(queries, docs, n_docs=n_docs, strategy=strategy,
                         strategies=self.STRATEGIES, seed=seed, pad=pad,
                         on_missing_doc=on_missing_doc, depth=depth, source="teacher")
        if targets not in ("rank", "score"):
            raise ConfigError(f"TeacherGroupBuilder: targets must be 'rank' or 'score', "
                              f"got {targets!r}")
        if ties not in ("ordinal", "competition"):
            raise ConfigError(f"TeacherGroupBuilder: ties must be 'ordinal' or 'competition', "
                              f"got {ties!r}")
        self.targets = targets
        self.ties = ties
        if depth is None:
            depth = max((len(r) for r in teacher.values()), default=1) or 1
        self.target_depth = depth
        for qid, ranking in teacher.items():
            self.stats.n_queries += 1
            if qid not in queries:
                self.stats.skip(qid, "missing_query_text")
                continue
            top = ranking.docs[:depth]
            if not top:
                self.stats.skip(qid, "no_candidates")
                continue
            ids = [d.doc_id for d in top]
            pool = self._usable_pool(qid, ids)
            if pool is None or not self._enough(qid, len(pool)):
                continue
            self._accept(qid, _TeacherPlan(tuple(pool), _positions(top, ties),
                                           {d.doc_id: d.score for d in top}))
        self._finish()

    def _sample(self, plan: _TeacherPlan, rng: random.Random) -> list[str]:
        if self.strategy == "top":
            return list(plan.pool[:self.n_docs])
        return self._pick_top_and_random(plan.pool, rng)

    def _targets(self, plan: _TeacherPlan, doc_ids: list[str]) -> list[float]:
        if self.targets == "score":
            return [float(plan.scores[d]) for d in doc_ids]
        return targets_from_ranks([plan.ranks[d] for d in doc_ids], self.target_depth)


def _positions(top: Sequence[Any], ties: str) -> dict[str, int]:
    """1-based teacher positions of a ranking's docs; ``competition``: a tie's best position."""
    out: dict[str, int] = {}
    first: dict[float, int] = {}
    for i, d in enumerate(top, 1):
        out[d.doc_id] = first.setdefault(d.score, i) if ties == "competition" else i
    return out


# ---------------------------------------------------------------------------------------------
# torch glue: Dataset, Sampler, collate


class GroupDataset(torch.utils.data.Dataset):
    """Map-style dataset over a builder's groups.

    ``dataset[i]`` is group ``i`` of :attr:`epoch`; ``dataset[(epoch, i)]`` names the epoch
    explicitly, which is what :class:`GroupSampler` yields, so DataLoader workers (copies of
    the dataset) never need to be told the epoch.
    """

    def __init__(self, builder: GroupBuilder, epoch: int = 0) -> None:
        self.builder = builder
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.builder)

    def __getitem__(self, key: int | tuple[int, int]) -> TrainGroup:
        if isinstance(key, tuple):
            epoch, index = key
            return self.builder.group(index, epoch)
        return self.builder.group(key, self.epoch)


class GroupSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` in :meth:`GroupBuilder.epoch_order`, resumable mid-epoch.

    ``set_epoch(e)`` (Lightning calls it each epoch) selects the order. ``set_start(k)``
    skips the first ``k`` groups of the current epoch only (after resuming); the next
    ``set_epoch`` resets it. ``state_dict()`` / ``load_state_dict()`` carry both.
    """

    def __init__(self, builder: GroupBuilder, shuffle: bool = True) -> None:
        self.builder = builder
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        if not 0 <= start <= len(self.builder):
            raise ConfigError(f"start must be in 0..{len(self.builder)}, got {start}")
        self.start = start

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "start": self.start}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.set_start(int(state["start"]))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.builder.epoch_order(self.epoch, self.shuffle)[self.start:]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return len(self.builder) - self.start


@dataclass
class GroupBatch:
    """A padded batch of groups. Padding has doc id/text ``""``, target 0 and mask False."""

    query_ids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    docs: list[list[str]]
    targets: torch.Tensor  # (B, N) float32
    mask: torch.Tensor  # (B, N) bool, True = real document

    def flat_pairs(self) -> tuple[list[str], list[str]]:
        """(query texts, doc texts) of the real documents, row-major, for a cross-encoder."""
        qs: list[str] = []
        ds: list[str] = []
        for q, row, m in zip(self.queries, self.docs, self.mask.tolist(), strict=True):
            for d, real in zip(row, m, strict=True):
                if real:
                    qs.append(q)
                    ds.append(d)
        return qs, ds

    def unflatten(self, flat_scores: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Scores of :meth:`flat_pairs` order -> (B, N), padding filled with ``fill``."""
        if flat_scores.ndim != 1 or flat_scores.shape[0] != int(self.mask.sum()):
            raise ConfigError(f"expected {int(self.mask.sum())} flat scores, got shape "
                              f"{tuple(flat_scores.shape)}")
        out = flat_scores.new_full(self.mask.shape, fill)
        return out.masked_scatter(self.mask.to(flat_scores.device), flat_scores)


def collate_groups(groups: Sequence[TrainGroup]) -> GroupBatch:
    """Pad groups to the longest one; the mask marks real documents."""
    if not groups:
        raise ConfigError("collate_groups: empty batch")
    width = max(len(g) for g in groups)
    targets = torch.zeros(len(groups), width, dtype=torch.float32)
    mask = torch.zeros(len(groups), width, dtype=torch.bool)
    doc_ids: list[list[str]] = []
    docs: list[list[str]] = []
    for b, g in enumerate(groups):
        n = len(g)
        targets[b, :n] = torch.tensor(g.targets, dtype=torch.float32)
        mask[b, :n] = True
        doc_ids.append(list(g.doc_ids) + [""] * (width - n))
        docs.append(list(g.docs) + [""] * (width - n))
    return GroupBatch([g.query_id for g in groups], [g.query for g in groups], doc_ids, docs,
                      targets, mask)
