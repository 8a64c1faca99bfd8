"""Re-rank a candidate :class:`~rankstack.records.Run` with any registered scorer.

Policies (each counted in :class:`RerankStats`, logged, and kept on
:attr:`Reranker.last_stats`):

* **depth**: only the top-``depth`` candidates of each query are scored. Candidates below
  depth are kept after them in their original order; their scores are replaced by
  ``min(re-ranked scores) - 1, - 2, ...`` so they sort below every re-ranked one (scores of
  one Ranking stay comparable only in order).
* **query with zero candidates**: kept as an empty Ranking (counted ``empty_queries``).
* **doc id missing from the corpus**: :class:`~rankstack.errors.InputError` naming query and
  doc; with ``on_missing="skip"`` the doc is dropped from the output and counted
  (``missing_docs``). A query id missing from ``queries`` is handled the same way (its whole
  ranking is dropped and counted in ``missing_queries``).
* **empty run**: InputError (nothing to re-rank is almost always a wiring mistake).
* **passages longer than the token budget**: truncated by the scorer's encoder and counted
  (``passages_truncated``; likewise ``queries_truncated``).

Long jobs resume: with ``journal=path`` each finished query is appended to a JSONL journal,
and a re-run with the same journal scores only the queries not recorded there.

Produced Rankings name the model as their ``scorer``; the score kind (logit, log_prob,
cosine...) is :attr:`Reranker.score_kind`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rankstack.errors import ConfigError, InputError
from rankstack.io.journal import RankingJournal
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc
from rankstack.rerank.base import Scorer
from rankstack.rerank.registry import SCORERS, scorer_class

if TYPE_CHECKING:
    from rankstack.datasets import Dataset

log = logging.getLogger("rankstack.rerank")

OnMissing = Literal["raise", "skip"]

#: config.json key naming the rankstack family of a saved model directory.
FAMILY_KEY = "rankstack_family"


@dataclass
class RerankStats:
    """What one :meth:`Reranker.rerank` call did (see module doc for the policies)."""

    model: str = ""
    score_kind: str = ""
    depth: int | None = None
    queries: int = 0
    pairs_scored: int = 0
    kept_below_depth: int = 0
    empty_queries: int = 0
    missing_docs: int = 0
    missing_queries: int = 0
    passages_truncated: int = 0
    queries_truncated: int = 0
    resumed_queries: int = 0
    seconds: float = 0.0

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pairs_per_second"] = round(self.pairs_per_second, 2)
        return d

    def summary(self) -> str:
        return (f"{self.model}: re-ranked {self.pairs_scored} pairs of {self.queries} queries "
                f"(depth {self.depth}) in {self.seconds:.1f}s ({self.pairs_per_second:.1f} "
                f"pairs/s); empty queries {self.empty_queries}, missing docs "
                f"{self.missing_docs}, missing queries {self.missing_queries}, passages "
                f"truncated {self.passages_truncated}, queries truncated "
                f"{self.queries_truncated}")


def family_from_config(model: str) -> str | None:
    """The ``rankstack_family`` recorded in ``<model>/config.json``, if any."""
    cfg = Path(model) / "config.json"
    if not cfg.is_file():
        return None
    try:
        value = json.loads(cfg.read_text(encoding="utf-8")).get(FAMILY_KEY)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model config: {exc}", path=cfg) from exc
    if value is not None and not isinstance(value, str):
        raise InputError(f"{FAMILY_KEY} must be a string", path=cfg, field=FAMILY_KEY)
    return value


def _counts(scorer: Scorer) -> tuple[int, int]:
    c = getattr(scorer, "counts", None)
    if c is None:
        return 0, 0
    return int(getattr(c, "passages", 0)), int(getattr(c, "queries", 0))


class Reranker:
    """Scores the top-``depth`` candidates of each query with ``scorer`` and re-sorts them.

    ``batch_size`` (if given) is set on the scorer; ``chunk_pairs`` pairs are handed to the
    scorer at a time (progress bar steps, bounded memory).
    """

    def __init__(self, scorer: Scorer, batch_size: int | None = None, depth: int | None = 100,
                 *, on_missing: OnMissing = "raise", show_progress: bool = True,
                 chunk_pairs: int = 4096) -> None:
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ConfigError(f"depth must be a positive integer or None, not {depth!r}")
        if on_missing not in ("raise", "skip"):
            raise ConfigError(f"on_missing must be 'raise' or 'skip', not {on_missing!r}")
        if batch_size is not None:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
            scorer.batch_size = batch_size  # type: ignore[attr-defined]
        self.scorer = scorer
        self.depth = depth
        self.on_missing: OnMissing = on_missing
        self.show_progress = show_progress
        self.chunk_pairs = max(1, int(chunk_pairs))
        self.last_stats: RerankStats | None = None

    @property
    def name(self) -> str:
        """The model id; the ``scorer`` of produced Rankings."""
        return self.scorer.name

    @property
    def score_kind(self) -> str:
        return self.scorer.score_kind

    @classmethod
    def from_pretrained(cls, model: str | None = None, family: str | None = None,
                        **settings: Any) -> Reranker:
        """Load a scorer of ``family`` from a hub name or local path and wrap it.

        ``family=None``: read ``rankstack_family`` from ``<model>/config.json``; if absent,
        a ConfigError asks for it (families are never guessed from names). ``model=None``:
        the offline default (:mod:`rankstack.rerank.defaults`). Reranker settings
        (``depth``, ``on_missing``, ``show_progress``, ``chunk_pairs``) are taken out of
        ``settings``; ``batch_size`` goes to both; the rest go to the scorer.
        ``workers=N`` (N > 1): score with N processes, each with its own copy of the scorer
        (``threads`` per worker, default 1); see :mod:`rankstack.rerank.parallel`.
        """
        own = {k: settings.pop(k) for k in ("depth", "on_missing", "show_progress",
                                            "chunk_pairs") if k in settings}
        workers = settings.pop("workers", 1)
        if workers is None:
            workers = 1
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}")
        if model is None:
            from rankstack.rerank.defaults import default_model

            path, default_family, defaults = default_model()
            if family is not None and family != default_family:
                raise ConfigError(f"no model given for family {family!r}; the offline default "
                                  f"model is a {default_family!r} (name a model with --model)")
            model, family = path, default_family
            settings = {**defaults, **settings}
        if family is None and model.startswith("bundled:"):
            from rankstack.rerank.defaults import bundled_defaults

            recorded = bundled_defaults(model)
            if recorded is not None:
                family, defaults = recorded
                settings = {**defaults, **settings}
        if family is None:
            family = family_from_config(model)
            if family is None:
                raise ConfigError(
                    f"model {model!r}: give its family with --family (one of "
                    f"{', '.join(sorted(SCORERS))}); rankstack never guesses it from the name "
                    f"(a saved model may record it as '{FAMILY_KEY}' in config.json)")
        cls_ = scorer_class(family)
        load = getattr(cls_, "from_pretrained", cls_)
        _check_settings(family, cls_, load, settings)
        if workers > 1:
            from rankstack.rerank.parallel import ParallelScorer

            scorer: Scorer = ParallelScorer(family, model, workers=workers, settings=settings)
        else:
            scorer = load(model, **settings)
        return cls(scorer, settings.get("batch_size"), **own)

    def close(self) -> None:
        self.scorer.close()

    # -- re-ranking -------------------------------------------------------------------------
    def rerank(self, run: Run, queries: Mapping[str, Query], docs: Mapping[str, Doc],
               depth: int | None = None) -> Run:
        """Re-rank ``run`` (see module doc for policies); stats go to :attr:`last_stats`."""
        return self.rerank_with_stats(run, queries, docs, depth)[0]

    def rerank_with_stats(self, run: Run, queries: Mapping[str, Query],
                          docs: Mapping[str, Doc], depth: int | None = None, *,
                          journal: str | os.PathLike[str] | None = None
                          ) -> tuple[Run, RerankStats]:
        """Like :meth:`rerank`, also returning the stats.

        ``journal``: a JSONL file where each finished query's ranking is appended (flushed and
        fsynced per group of ``chunk_pairs`` pairs). If it exists, the queries recorded there
        are taken from it instead of being scored again, so an interrupted job resumes. It
        must come from the same model, depth and candidates (else ConfigError).
        """
        depth = self.depth if depth is None else depth
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ConfigError(f"depth must be a positive integer or None, not {depth!r}")
        if len(run) == 0:
            raise InputError(f"run {run.name!r} has no queries: nothing to re-rank")
        stats = RerankStats(model=self.name, score_kind=self.score_kind, depth=depth)
        t0 = time.perf_counter()
        p0, q0 = _counts(self.scorer)

        # Check every input before any model work.
        plan: list[_Item] = []
        for qid, ranking in run.items():
            query = queries.get(qid)
            if query is None:
                if self.on_missing == "raise":
                    raise InputError(f"query {qid!r} of run {run.name!r} has no text "
                                     f"(not in the queries)", field="query_id")
                stats.missing_queries += 1
                continue
            stats.queries += 1
            if len(ranking) == 0:
                stats.empty_queries += 1
            head = ranking.docs if depth is None else ranking.docs[:depth]
            tail = [] if depth is None else ranking.docs[depth:]
            item = _Item(qid, query.text)
            for sd in head:
                doc = docs.get(sd.doc_id)
                if doc is None:
                    self._missing(sd.doc_id, qid, stats)
                    continue
                item.ids.append(sd.doc_id)
                item.texts.append(doc.full_text)
            for sd in tail:
                if sd.doc_id not in docs:
                    self._missing(sd.doc_id, qid, stats)
                    continue
                item.tail.append(sd)
            plan.append(item)

        done: dict[str, Ranking] = {}
        jr = None
        if journal is not None:
            jr = RankingJournal(journal, {"rankstack_rerank_journal": 1, "model": self.name,
                                          "depth": depth, "candidates": _fingerprint(plan)})
            done = jr.load()
            stats.resumed_queries = sum(1 for it in plan if it.qid in done)
        pending = [it for it in plan if it.qid not in done]
        total = sum(len(it.ids) for it in pending)
        bar = None
        if self.show_progress and total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=f"re-ranking ({_short(self.name)})", unit="pair")
        with contextlib.ExitStack() as stack:
            jw = stack.enter_context(jr.writer()) if jr is not None else None
            if bar is not None:
                stack.callback(bar.close)
            group: list[_Item] = []
            n_group = 0
            for i, it in enumerate(pending):
                group.append(it)
                n_group += len(it.ids)
                if n_group >= self.chunk_pairs or i == len(pending) - 1:
                    ranked = self._score_group(group, stats, bar)
                    done.update((r.query_id, r) for r in ranked)
                    if jw is not None:
                        jw.write(ranked)
                    group, n_group = [], 0

        out = Run(name=f"{run.name}+{_short(self.name)}")
        for it in plan:
            out.add(done[it.qid])
        p1, q1 = _counts(self.scorer)
        stats.passages_truncated, stats.queries_truncated = p1 - p0, q1 - q0
        stats.seconds = time.perf_counter() - t0
        self.last_stats = stats
        log.info("%s", stats.summary())
        if stats.missing_docs or stats.missing_queries:
            log.warning("%s: skipped %d docs and %d queries missing from the inputs",
                        self.name, stats.missing_docs, stats.missing_queries)
        return out, stats

    def _missing(self, doc_id: str, qid: str, stats: RerankStats) -> None:
        if self.on_missing == "raise":
            raise InputError(f"doc {doc_id!r} (query {qid!r}) is not in the corpus",
                             field="doc_id")
        stats.missing_docs += 1

    def _score_group(self, group: list[_Item], stats: RerankStats, bar: Any) -> list[Ranking]:
        q_texts = [it.query for it in group for _ in it.ids]
        p_texts = [t for it in group for t in it.texts]
        n = len(q_texts)
        scores = np.empty(n, dtype=np.float32)
        for a in range(0, n, self.chunk_pairs):
            b = min(n, a + self.chunk_pairs)
            s = np.asarray(self.scorer.score_pairs(q_texts[a:b], p_texts[a:b]),
                           dtype=np.float32).reshape(-1)
            if len(s) != b - a:
                raise RuntimeError(f"scorer {self.name} returned {len(s)} scores for "
                                   f"{b - a} pairs")
            if not np.isfinite(s).all():
                bad = int(np.flatnonzero(~np.isfinite(s))[0]) + a
                raise RuntimeError(f"scorer {self.name} returned a non-finite score for "
                                   f"pair {bad} (query {q_texts[bad][:60]!r})")
            scores[a:b] = s
            if bar is not None:
                bar.update(b - a)
        stats.pairs_scored += n
        out, pos = [], 0
        for it in group:
            s = scores[pos:pos + len(it.ids)]
            pos += len(it.ids)
            head = [ScoredDoc(d, float(x)) for d, x in zip(it.ids, s, strict=True)]
            floor = float(s.min()) if len(s) else 0.0
            tail = [ScoredDoc(sd.doc_id, floor - (i + 1)) for i, sd in enumerate(it.tail)]
            stats.kept_below_depth += len(tail)
            out.append(Ranking(it.qid, head + tail, self.name))
        return out


def _check_settings(family: str, cls_: type, load: Any, settings: Mapping[str, Any]) -> None:
    """ConfigError for settings the family's loader cannot take (instead of a TypeError).

    Settings flow through every ``from_pretrained`` along the MRO (each may forward
    ``**kwargs`` to its parent's) and then through the ``__init__`` chain; a name is known if
    any signature reachable that way takes it. If ``**kwargs`` reaches the end of both
    chains, nothing can be told and nothing is checked.
    """
    import inspect

    def chain(funcs: list[Any]) -> tuple[set[str], bool]:
        names: set[str] = set()
        for f in funcs:
            try:
                params = list(inspect.signature(f).parameters.values())
            except (TypeError, ValueError):
                return names, True
            names |= {p.name for p in params
                      if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"self", "cls"}
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                return names, False  # this signature is the last the settings can reach
        return names, True

    loaders = [c.__dict__["from_pretrained"].__get__(None, cls_) for c in cls_.__mro__
               if "from_pretrained" in c.__dict__] or [load]
    inits = [c.__init__ for c in cls_.__mro__ if "__init__" in c.__dict__]
    known_l, open_l = chain(loaders)
    known_i, open_i = chain(inits)
    if open_l and open_i:
        return  # **kwargs all the way down: cannot tell
    known = known_l | known_i
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"family {family!r} does not take setting(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(sorted(known))}")


@dataclass
class _Item:
    qid: str
    query: str
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tail: list[ScoredDoc] = field(default_factory=list)


def _fingerprint(plan: list[_Item]) -> str:
    import hashlib

    h = hashlib.sha256()
    for it in plan:
        h.update(json.dumps([it.qid, it.query, it.ids, [d.doc_id for d in it.tail]]).encode())
    return h.hexdigest()[:16]


def _short(name: str) -> str:
    return Path(name.rstrip("/")).name or name


def rerank_dataset(ds: Dataset, reranker: Reranker | None = None, *, model: str | None = None,
                   family: str | None = None, depth: int | None = None,
                   **settings: Any) -> Run:
    """Re-rank a dataset's candidate run (``ds.run``) with ``reranker`` or a model to load."""
    if ds.run is None:
        raise ConfigError(f"dataset {ds.name!r} has no candidate run to re-rank")
    if reranker is None:
        reranker = Reranker.from_pretrained(model, family, **settings)
    elif model is not None or family is not None or settings:
        raise ConfigError("give either a reranker or a model/family/settings, not both")
    return reranker.rerank(ds.run, ds.queries, ds.docs, depth=depth)
