"""Pointwise re-ranking: a :class:`~rankstack.rerank.base.Scorer` (pairs -> scores) wrapped
as a :class:`~rankstack.rerank.base.RunReranker`.

The input policies (depth/tail, missing docs and queries, empty queries, ties, truncation
warnings, journal/resume) are the protocol's, in :mod:`rankstack.rerank.base`; this module
only hands each group of pairs to the scorer (``chunk_pairs`` at a time) and reads its
truncation counts. Produced Rankings name the model as their ``scorer``; the score kind
(logit, log_prob, cosine...) is :attr:`Reranker.score_kind`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rankstack.errors import ConfigError, InputError
from rankstack.records import Run
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker, Scorer, split_scores
from rankstack.rerank.registry import SCORERS, scorer_class
from rankstack.rerank.report import RerankReport

if TYPE_CHECKING:
    from rankstack.datasets import Dataset

log = logging.getLogger("rankstack.rerank")

#: config.json key naming the rankstack family of a saved model directory.
FAMILY_KEY = "rankstack_family"

#: the former name of the report
RerankStats = RerankReport


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


class Reranker(RunReranker):
    """Scores the top-``depth`` candidates of each query with ``scorer`` and re-sorts them.

    ``batch_size`` (if given) is set on the scorer; ``chunk_pairs`` pairs are handed to the
    scorer at a time (progress bar steps, bounded memory, one journal write).
    """

    def __init__(self, scorer: Scorer, batch_size: int | None = None, depth: int | None = 100,
                 *, on_missing: OnMissing = "raise", show_progress: bool = True,
                 chunk_pairs: int = 4096) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress,
                         chunk_pairs=max(1, int(chunk_pairs)))
        if batch_size is not None:
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
            scorer.batch_size = batch_size  # type: ignore[attr-defined]
        self.scorer = scorer
        self._counts0 = (0, 0)

    @property
    def name(self) -> str:  # type: ignore[override]
        """The model id; the ``scorer`` of produced Rankings."""
        return self.scorer.name

    @property
    def score_kind(self) -> str:  # type: ignore[override]
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

    # -- protocol hooks ---------------------------------------------------------------------
    def _begin(self, report: RerankReport) -> None:
        self._counts0 = _counts(self.scorer)

    def _finish(self, report: RerankReport) -> None:
        p1, q1 = _counts(self.scorer)
        report.passages_truncated = p1 - self._counts0[0]
        report.queries_truncated = q1 - self._counts0[1]
        report.budgets = budgets_of(self.scorer)

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        q_texts = [it.query for it in items for _ in it.ids]
        p_texts = [t for it in items for t in it.texts]
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
            advance(b - a)
        report.pairs_scored += n
        return split_scores(scores, items)


def budgets_of(scorer: Any) -> dict[str, Any]:
    """The token budgets a scorer applies (``query_length``/``doc_length``/``max_length``),
    read from it or its encoder, and how to raise them."""
    out: dict[str, Any] = {}
    for holder in (scorer, getattr(scorer, "encoder", None)):
        for k in ("query_length", "doc_length", "max_length"):
            v = getattr(holder, k, None) if holder is not None else None
            if isinstance(v, int) and not isinstance(v, bool) and k not in out:
                out[k] = v
    if out:
        out["raise_with"] = ("--set doc_length=N / --set query_length=N (settings: "
                             "{doc_length: N}), up to the model's max_length")
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
