"""Evaluate runs against qrels with ir_measures; compare runs with paired significance tests.

Measures are values (``ir_measures`` measure objects or their strings, e.g. ``nDCG@10``,
``RR@10``, ``AP``, ``R@100``, ``P@10``, ``Judged@10``). An :class:`Evaluator` is built once per
(measures, qrels) and reused for any number of runs.

Conventions, stated once:

* **Binary relevance.** A measure that takes a ``rel`` threshold (RR, AP, P, R, Success, ...)
  and does not set one gets ``rel=binary_rel``: TREC DL counts grade >= 2 as relevant, so the
  TREC DL datasets' qrels carry ``Qrels.binary_rel=2``. ``binary_rel`` defaults to the qrels'
  own, else 1; a graded qrels file (max grade >= 2) evaluated at 1 by default logs a warning.
  An explicit ``RR(rel=1)@10`` is kept as written. Tables show the threshold in the header
  (``RR(rel=2)@10``, also ``RR(rel=1)@10``).
  Graded measures (nDCG) use the grades as gains (trec_eval's linear gain).
* **Order.** A run is evaluated in rankstack's order (score desc, then doc id asc): the scores
  handed to ir_measures are ``n - position``, so no evaluator can re-break ties its own way
  (trec_eval breaks ties by doc id *descending*). On the shipped reference runs (BM25,
  SPLADE++, TAS-B on DL19/DL20) nDCG@10, RR@10, P@10 and R@100 equal trec_eval per query
  (nDCG@10: BM25 DL19 0.5058, DL20 0.4796; SPLADE++ 0.7308 / 0.7197; TAS-B 0.7210 / 0.6854).
  Deeper measures can see the few score ties: on dl20-splade, query 583468 ties at ranks 22-23
  (grades 2 and 1), so AP(rel=2) is 0.482659 here vs 0.482648 in trec_eval; nDCG@100 moves by
  ~1e-6 on the SPLADE++/TAS-B runs.
* **Missing queries.** A judged query (in the qrels) with no or an empty ranking in the run
  scores 0 on every measure under ``missing="zero"`` (like ``trec_eval -c``; 0 is what an empty
  ranking scores on effectiveness measures) or is left out of that run's mean under
  ``missing="skip"``. Queries in the run without judgments are ignored. Both are counted in
  the result, never silently dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rankstack.errors import ConfigError
from rankstack.evaluate.measures import resolve_measure
from rankstack.evaluate.stats import TESTS, holm, paired_values, run_test
from rankstack.records import Qrels, Run, rank_key

log = logging.getLogger("rankstack.evaluate")

MissingPolicy = Literal["zero", "skip"]
DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100")


def _qid_key(qid: str) -> tuple[int, int, str]:
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def sort_qids(qids: Iterable[str]) -> list[str]:
    """Query ids in numeric order where numeric, then the others in string order."""
    return sorted(qids, key=_qid_key)


def rank_scores(run: Run) -> dict[str, dict[str, float]]:
    """``{qid: {docid: n - position}}`` in rankstack order (see the module docstring)."""
    out: dict[str, dict[str, float]] = {}
    for qid, ranking in run.rankings.items():
        docs = sorted(ranking.docs, key=rank_key)
        n = len(docs)
        if n:
            out[qid] = {d.doc_id: float(n - i) for i, d in enumerate(docs)}
    return out


@dataclass
class RunResult:
    """One run's per-query values and means, with the query accounting of the policy."""

    name: str
    measures: list[str]
    per_query: dict[str, dict[str, float]]  # measure -> qid -> value
    aggregates: dict[str, float]  # measure -> mean over the aggregated queries
    evaluated: list[str]  # judged queries the run ranked
    missing: list[str]  # judged queries the run did not rank (zeroed or skipped)
    unjudged: list[str]  # queries of the run without judgments (ignored)
    missing_policy: MissingPolicy = "zero"
    no_value: dict[str, int] = field(default_factory=dict)  # measure -> queries ir_measures left out

    @property
    def n_queries(self) -> int:
        """How many queries each mean is over."""
        return len(self.evaluated) + (len(self.missing) if self.missing_policy == "zero" else 0)

    def counts(self) -> dict[str, Any]:
        return {
            "aggregated": self.n_queries,
            "evaluated": len(self.evaluated),
            "missing": len(self.missing),
            "missing_policy": self.missing_policy,
            "unjudged_ignored": len(self.unjudged),
            "no_value": dict(self.no_value),
        }

    def __getitem__(self, measure: str) -> float:
        return self.aggregates[measure]


class Evaluator:
    """Measures + qrels, built once and reused for many runs.

    >>> ev = Evaluator(["nDCG@10", "RR@10"], qrels, binary_rel=2)   # doctest: +SKIP
    >>> ev.evaluate(run).aggregates["nDCG@10"]                       # doctest: +SKIP
    """

    def __init__(
        self,
        measures: Sequence[Any] = DEFAULT_MEASURES,
        qrels: Qrels | Mapping[str, Mapping[str, int]] | None = None,
        binary_rel: int | None = None,
        missing: MissingPolicy = "zero",
    ) -> None:
        import ir_measures

        if qrels is None:
            raise ConfigError("Evaluator needs qrels")
        if binary_rel is None:
            binary_rel = getattr(qrels, "binary_rel", None)
            if binary_rel is None:
                binary_rel = 1
                _warn_graded(qrels)
        if missing not in ("zero", "skip"):
            raise ConfigError(f"missing must be 'zero' or 'skip', not {missing!r}")
        if isinstance(binary_rel, bool) or not isinstance(binary_rel, int):
            raise ConfigError(f"binary_rel must be an integer grade, not {binary_rel!r}")
        if not measures:
            raise ConfigError("no measures given")
        judgments = qrels.judgments if isinstance(qrels, Qrels) else qrels
        self.qrels_name = qrels.name if isinstance(qrels, Qrels) else "qrels"
        self.qrels = {str(q): {str(d): int(g) for d, g in docs.items()}
                      for q, docs in judgments.items() if docs}
        if not self.qrels:
            raise ConfigError(f"{self.qrels_name}: no judged queries")
        self.binary_rel = binary_rel
        self.missing: MissingPolicy = missing
        self.requested = [m if isinstance(m, str) else str(m) for m in measures]
        self.measures = [resolve_measure(m, binary_rel) for m in measures]
        self.names = [str(m) for m in self.measures]
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"duplicate measures: {', '.join(self.names)}")
        self._by_measure = dict(zip(self.measures, self.names, strict=True))
        try:
            self._evaluator = ir_measures.evaluator(self.measures, self.qrels)
        except ValueError as exc:  # ir_measures: "Unsupported measures {...}"
            raise ConfigError(f"ir_measures cannot compute these measures: {exc}") from None

    def name_of(self, measure: Any) -> str:
        """The resolved name of a measure as requested (``RR@10`` -> ``RR(rel=2)@10``)."""
        if isinstance(measure, str) and measure in self.names:
            return measure
        name = str(resolve_measure(measure, self.binary_rel))
        if name not in self.names:
            raise ConfigError(f"measure {measure!r} is not one of this evaluator's: "
                              f"{', '.join(self.names)}")
        return name

    def evaluate(self, run: Run | Mapping[str, Mapping[str, float]], name: str | None = None
                 ) -> RunResult:
        """Per-query values and means of every measure for one run."""
        if not isinstance(run, Run):
            run = Run.from_dict(run, name=name or "run")
        label = name or run.name
        scores = rank_scores(run)
        judged = set(self.qrels)
        evaluated = sort_qids(judged & set(scores))
        missing = sort_qids(judged - set(scores))  # includes queries with an empty ranking
        unjudged = sort_qids(set(run.rankings) - judged)
        per_query: dict[str, dict[str, float]] = {n: {} for n in self.names}
        to_eval = {q: scores[q] for q in evaluated}
        if to_eval:
            for metric in self._evaluator.iter_calc(to_eval):
                if metric.query_id not in to_eval:
                    continue  # some providers also report qrels queries absent from the run
                mname = self._by_measure.get(metric.measure, str(metric.measure))
                per_query[mname][metric.query_id] = float(metric.value)
        no_value: dict[str, int] = {}
        for n in self.names:
            lacking = [q for q in evaluated if q not in per_query[n]]
            if lacking:
                # ir_measures produced no value (e.g. a measure undefined for that query):
                # handled like a missing query, and counted.
                no_value[n] = len(lacking)
                log.warning("%s: %s has no value for %d querie(s), e.g. %s; treated as missing "
                            "(%s)", label, n, len(lacking), lacking[0], self.missing)
                if self.missing == "zero":
                    for q in lacking:
                        per_query[n][q] = 0.0
            if self.missing == "zero":
                for q in missing:
                    per_query[n][q] = 0.0
            per_query[n] = {q: per_query[n][q] for q in sort_qids(per_query[n])}
        if missing:
            log.info("%s: %d judged querie(s) not in the run (%s)", label, len(missing),
                     "scored 0" if self.missing == "zero" else "skipped")
        if unjudged:
            log.info("%s: %d querie(s) without judgments ignored", label, len(unjudged))
        aggregates = {n: (math.fsum(v.values()) / len(v) if v else math.nan)
                      for n, v in per_query.items()}
        return RunResult(label, list(self.names), per_query, aggregates, evaluated, missing,
                         unjudged, self.missing, no_value)

    def compare(
        self,
        runs: Sequence[Run] | Mapping[str, Run],
        baseline: int | str | None = 0,
        tests: Sequence[str] = TESTS,
        rounds: int = 10_000,
        seed: int = 0,
        alpha: float = 0.05,
    ) -> Comparison:
        """Evaluate several runs side by side and test each against the baseline.

        ``runs`` is a list (labelled by run name, de-duplicated with ``#2``...) or a mapping
        label -> Run. ``baseline`` is an index into ``runs``, a label, or None (no tests); with
        a single run there is no baseline.
        """
        if isinstance(runs, Mapping):
            items = [(str(k), v) for k, v in runs.items()]
        else:
            items = []
            seen: dict[str, int] = {}
            for r in runs:
                seen[r.name] = seen.get(r.name, 0) + 1
                items.append((r.name if seen[r.name] == 1 else f"{r.name}#{seen[r.name]}", r))
        if not items:
            raise ConfigError("no runs to evaluate")
        labels = [k for k, _ in items]
        base = _baseline_index(baseline, labels)
        if len(items) == 1:
            base = None  # nothing to compare against
        for t in tests:
            if t not in TESTS:
                raise ConfigError(f"unknown significance test {t!r}: use one of {', '.join(TESTS)}")
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), not {alpha}")
        results = [self.evaluate(r, name=k) for k, r in items]
        comp = Comparison(results, base, [], alpha, list(tests), rounds, seed, self.binary_rel,
                          self.missing, self.qrels_name, len(self.qrels),
                          dict(zip(self.requested, self.names, strict=True)))
        if base is not None:
            comp.tests = _significance(results, base, list(tests), rounds, seed)
        return comp


def _warn_graded(qrels: Qrels | Mapping[str, Mapping[str, int]]) -> None:
    judgments = qrels.judgments if isinstance(qrels, Qrels) else qrels
    top = max((int(g) for docs in judgments.values() for g in docs.values()), default=0)
    if top >= 2:
        name = qrels.name if isinstance(qrels, Qrels) else "qrels"
        log.warning("%s: graded qrels (grades up to %d) evaluated with binary measures at "
                    "relevance >= 1 (the default for a qrels file); TREC DL counts >= 2 as "
                    "relevant: give --binary-rel 2 (binary_rel=2) for that, or --binary-rel 1 "
                    "to keep 1 and silence this warning", name, top)


def _baseline_index(baseline: int | str | None, labels: list[str]) -> int | None:
    if baseline is None:
        return None
    if isinstance(baseline, int) and not isinstance(baseline, bool):
        if not -len(labels) <= baseline < len(labels):
            raise ConfigError(f"baseline index {baseline} is out of range for {len(labels)} run(s)")
        return baseline % len(labels)
    if baseline in labels:
        return labels.index(baseline)
    raise ConfigError(f"baseline {baseline!r} is not one of the runs: {', '.join(labels)}")


@dataclass
class SignificanceTest:
    """One paired test of a run against the baseline on one measure."""

    run: str
    baseline: str
    measure: str
    test: str  # "t" or "perm"
    n: int  # paired queries
    mean_delta: float  # mean(run - baseline)
    statistic: float
    p_value: float
    p_holm: float = math.nan  # Holm-Bonferroni over the compared runs (same measure and test)

    def significant(self, alpha: float) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm < alpha


def _significance(results: list[RunResult], base: int, tests: list[str], rounds: int, seed: int
                  ) -> list[SignificanceTest]:
    out: list[SignificanceTest] = []
    baseline = results[base]
    for measure in baseline.measures:
        for test in tests:
            group: list[SignificanceTest] = []
            for i, res in enumerate(results):
                if i == base:
                    continue
                qids, a, b = paired_values(res, baseline, measure)
                outcome = run_test(test, a, b, rounds=rounds, seed=seed)
                delta = math.fsum(x - y for x, y in zip(a, b, strict=True)) / len(a) if a \
                    else math.nan
                group.append(SignificanceTest(res.name, baseline.name, measure, test, len(qids),
                                              delta, outcome.statistic, outcome.p_value))
            for t, p in zip(group, holm([t.p_value for t in group]), strict=True):
                t.p_holm = p
            out.extend(group)
    return out


@dataclass
class Comparison:
    """Several runs side by side, with tests against a baseline (see :meth:`Evaluator.compare`).

    Its reports (rich table, JSON, delta plot) are functions of :mod:`rankstack.evaluate.report`
    (``comparison_table``, ``write_json``, ``plot_deltas``), so this module imports no report code.
    """

    results: list[RunResult]
    baseline: int | None
    tests: list[SignificanceTest]
    alpha: float = 0.05
    test_names: list[str] = field(default_factory=lambda: list(TESTS))
    rounds: int = 10_000
    seed: int = 0
    binary_rel: int = 1
    missing_policy: MissingPolicy = "zero"
    qrels_name: str = "qrels"
    n_judged: int = 0
    measure_names: dict[str, str] = field(default_factory=dict)  # requested -> resolved

    @property
    def measures(self) -> list[str]:
        return self.results[0].measures

    @property
    def baseline_result(self) -> RunResult | None:
        return None if self.baseline is None else self.results[self.baseline]

    def result(self, name: str) -> RunResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def test(self, run: str, measure: str, test: str) -> SignificanceTest:
        for t in self.tests:
            if (t.run, t.measure, t.test) == (run, measure, test):
                return t
        raise KeyError((run, measure, test))


def evaluate(run: Run, qrels: Qrels, measures: Sequence[Any] = DEFAULT_MEASURES,
             binary_rel: int | None = None, missing: MissingPolicy = "zero") -> RunResult:
    """One-shot convenience: ``Evaluator(measures, qrels, ...).evaluate(run)``."""
    return Evaluator(measures, qrels, binary_rel, missing).evaluate(run)
