"""Multi-stage pipelines from one config: retrieve -> re-rank -> (re-rank) -> evaluate.

Config (YAML, see ``configs/pipeline_dl19.yaml``)::

    name: dl19-bm25-minilm
    dataset: dl19                 # queries, passages, candidate run, qrels (load_dataset)
    output_dir: runs/dl19-bm25-minilm
    queries: {limit: 3}           # optional: first N queries in dataset order, or {ids: [...]}
    retrieve:
      candidates: true            # the dataset's candidate run, and/or:
      bm25: {index_dir: DIR, k: 100}        # a 'rankstack index' directory, or
      # bm25: {corpus: dataset, k: 100, k1: 0.9, b: 0.4}   (index built in memory)
      dense: {index_dir: DIR, model: null, family: null, k: 100}
      # dense: {corpus: dataset|FILE.jsonl, ...}  (index built once under output_dir)
      fusion: {method: rrf, k: 60}          # required combination of >1 source (default rrf)
      depth: 100                  # keep the top-depth of the retrieved run
    rerank:                       # one stage or a list (each re-ranks the previous output)
      - {name: minilm, model: null, family: null, depth: 100, settings: {}}
      # each stage is a re-ranker spec (rankstack.rerank.spec: model, family or preset,
      # backend, settings, members for fusion) plus its name and depth, e.g.
      # - {name: llm, family: llm-listwise, backend: gguf,
      #    model: bundled:SmolLM2-135M-Instruct, depth: 20, settings: {window: 10}}
    evaluate: {measures: [nDCG@10, RR@10, R@100]}

Caching: each stage's key is :func:`rankstack.config.config_hash` of its own config, the
dataset and query selection, and the key of the stage before it. A stage writes
``<output_dir>/<stage>.run`` (TREC) and then ``<stage>.meta.json`` (key, config, counts); a
later run whose key matches the meta re-uses the run file without recomputing, so changing one
stage recomputes it and every stage after it, never the ones before. ``force=True`` recomputes
all. Evaluation is cheap and always recomputed; it is written to ``evaluation.json``.

Passages for re-ranking come from the dataset (``Dataset.docs``) or the corpus of a
BM25/dense source built with ``corpus:``. The evaluation is over the selected queries only
(qrels restricted to them); judged queries missing from a run score 0 (counted).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankstack.config import config_hash
from rankstack.errors import ConfigError, InputError
from rankstack.io import atomic_write, read_corpus, read_run, write_run
from rankstack.records import Doc, Qrels, Query, Run

log = logging.getLogger("rankstack.pipeline")

TOP_KEYS = {"name", "dataset", "output_dir", "queries", "retrieve", "rerank", "evaluate"}
RETRIEVE_KEYS = {"candidates", "bm25", "dense", "fusion", "depth"}
RERANK_KEYS = {"name", "model", "family", "preset", "backend", "members", "depth", "settings"}
CACHE_FORMAT = 1


@dataclass
class StageResult:
    name: str
    key: str
    cached: bool
    seconds: float
    path: Path
    n_queries: int
    n_pairs: int
    scorer: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineResult:
    name: str
    output_dir: Path
    stages: list[StageResult]
    measures: list[str]
    n_queries: int
    #: computed (not cached) stages, in order; tests and callers use it to see what re-ran
    recomputed: list[str] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def table(self):
        from rich.table import Table

        t = Table(title=f"pipeline {self.name} ({self.n_queries} queries)")
        from rankstack.tables import add_columns

        add_columns(t, ("stage", "key", "cached", "seconds", "queries", "pairs", *self.measures),
                    text=("stage", "key"))
        for s in self.stages:
            t.add_row(s.name, s.key, "yes" if s.cached else "no", f"{s.seconds:.1f}",
                      str(s.n_queries), str(s.n_pairs),
                      *(f"{s.metrics[m]:.4f}" if m in s.metrics else "-" for m in self.measures))
        return t


def _check_keys(cfg: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(known: {', '.join(sorted(allowed))})")


def _positive(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where} must be a positive integer, got {v!r}")
    return v


def normalize_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a pipeline config and fill defaults; raises ConfigError naming the bad key."""
    _check_keys(cfg, TOP_KEYS, "pipeline config")
    out = dict(cfg)
    if not isinstance(out.get("dataset"), str) or not out["dataset"]:
        raise ConfigError("pipeline config: 'dataset' (a dataset name or file) is required")
    if not out.get("output_dir"):
        raise ConfigError("pipeline config: 'output_dir' is required")
    out.setdefault("name", Path(str(out["output_dir"])).name)
    q = out.get("queries") or {}
    _check_keys(q, {"limit", "ids"}, "queries")
    if "limit" in q:
        _positive(q["limit"], "queries.limit")
    if "ids" in q and (not isinstance(q["ids"], list) or not q["ids"]):
        raise ConfigError("queries.ids must be a non-empty list of query ids")
    out["queries"] = {k: ([str(x) for x in v] if k == "ids" else v) for k, v in q.items()}
    r = out.get("retrieve")
    if r is None:
        raise ConfigError("pipeline config: 'retrieve' is required (candidates, bm25, dense)")
    _check_keys(r, RETRIEVE_KEYS, "retrieve")
    sources = [s for s in ("candidates", "bm25", "dense") if r.get(s)]
    if not sources:
        raise ConfigError("retrieve: give at least one of candidates: true, bm25: {...}, "
                          "dense: {...}")
    for s in ("bm25", "dense"):
        if r.get(s) is not None:
            _check_keys(r[s], {"index_dir", "corpus", "k", "k1", "b", "backend", "model",
                               "family", "settings", "mode", "hnsw_m", "ef_search",
                               "ef_construction", "batch_size"}, f"retrieve.{s}")
            if bool(r[s].get("index_dir")) == bool(r[s].get("corpus")):
                raise ConfigError(f"retrieve.{s}: give exactly one of index_dir or corpus")
            _positive(r[s].get("k", 100), f"retrieve.{s}.k")
    if r.get("fusion") is not None:
        _check_keys(r["fusion"], {"method", "k", "norm", "weights", "missing", "depth"},
                    "retrieve.fusion")
    if r.get("depth") is not None:
        _positive(r["depth"], "retrieve.depth")
    rr = out.get("rerank") or []
    if isinstance(rr, Mapping):
        rr = [rr]
    if not isinstance(rr, list):
        raise ConfigError("rerank must be a mapping or a list of mappings")
    stages = []
    names: set[str] = {"retrieve"}
    for i, st in enumerate(rr):
        _check_keys(st, RERANK_KEYS, f"rerank[{i}]")
        st = dict(st)
        st.setdefault("name", f"rerank{i + 1}")
        st.setdefault("depth", 100)
        st.setdefault("settings", {})
        _positive(st["depth"], f"rerank[{i}].depth")
        if not isinstance(st["settings"], Mapping):
            raise ConfigError(f"rerank[{i}].settings must be a mapping")
        if not isinstance(st["name"], str) or not st["name"].replace("-", "").replace(
                "_", "").isalnum() or st["name"] in names:
            raise ConfigError(f"rerank[{i}].name {st['name']!r} must be a unique name of "
                              f"letters, digits, - and _")
        names.add(st["name"])
        from rankstack.rerank.spec import SPEC_KEYS, resolve_spec

        # a bad family, preset or spec key fails here, before any stage runs
        resolve_spec({k: st[k] for k in SPEC_KEYS if st.get(k) is not None},
                     where=f"rerank[{i}]")
        stages.append(st)
    out["rerank"] = stages
    ev = out.get("evaluate") or {}
    _check_keys(ev, {"measures", "missing"}, "evaluate")
    out["evaluate"] = ev
    return out


class Pipeline:
    """Runs a normalized pipeline config (see the module docstring)."""

    def __init__(self, cfg: Mapping[str, Any], *, force: bool = False,
                 show_progress: bool = True, reranker_cache: dict[str, Any] | None = None
                 ) -> None:
        """``reranker_cache``: a dict shared between pipelines to keep loaded re-rankers
        (keyed by model, family and settings); without one each stage loads and closes its
        model."""
        self.cfg = normalize_config(cfg)
        self.reranker_cache = reranker_cache
        self.out = Path(str(self.cfg["output_dir"]))
        self.force = force
        self.show_progress = show_progress
        self._dataset = None
        self._docs: dict[str, Doc] | None = None
        #: the re-ranking report of each computed stage (written into its meta)
        self.reports: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- data
    @property
    def dataset(self):
        if self._dataset is None:
            from rankstack.datasets import load_dataset

            self._dataset = load_dataset(self.cfg["dataset"])
        return self._dataset

    def queries(self) -> dict[str, Query]:
        qs = self.dataset.queries
        sel = self.cfg["queries"]
        if "ids" in sel:
            missing = [q for q in sel["ids"] if q not in qs]
            if missing:
                raise ConfigError(f"queries.ids: {missing[:5]} not in dataset "
                                  f"{self.cfg['dataset']!r}")
            qs = {q: qs[q] for q in sel["ids"]}
        if "limit" in sel:
            qs = dict(list(qs.items())[: sel["limit"]])
        if not qs:
            raise ConfigError(f"dataset {self.cfg['dataset']!r} has no queries")
        return qs

    def _corpus(self, spec: str) -> dict[str, Doc]:
        if spec == "dataset":
            if not self.dataset.docs:
                raise ConfigError(f"dataset {self.cfg['dataset']!r} has no passage text")
            return self.dataset.docs
        return read_corpus(spec)

    def docs(self) -> dict[str, Doc]:
        """Passage text for re-ranking: the dataset's, plus any corpus a source was built on."""
        if self._docs is None:
            docs = dict(self.dataset.docs)
            r = self.cfg["retrieve"]
            for s in ("bm25", "dense"):
                spec = (r.get(s) or {}).get("corpus")
                if spec and spec != "dataset":
                    docs.update(read_corpus(spec))
            self._docs = docs
        return self._docs

    # --------------------------------------------------------------- cache
    def _base_key(self) -> dict[str, Any]:
        return {"dataset": self.cfg["dataset"], "queries": self.cfg["queries"]}

    def _cached(self, stage: str, key: str) -> Run | None:
        meta_p, run_p = self.out / f"{stage}.meta.json", self.out / f"{stage}.run"
        if self.force or not meta_p.is_file() or not run_p.is_file():
            return None
        try:
            meta = json.loads(meta_p.read_text(encoding="utf-8"))
        except ValueError:
            return None
        if meta.get("key") != key or meta.get("cache_format") != CACHE_FORMAT:
            return None
        try:
            run = read_run(run_p, scorer=meta.get("scorer"))
        except InputError as exc:
            log.warning("stage %s: cached run is unreadable (%s); recomputing", stage, exc)
            return None
        run.name = stage
        # queries with an empty ranking have no lines in a TREC file: restore them
        for qid in meta.get("empty_queries", []):
            if qid not in run:
                from rankstack.records import Ranking

                run.add(Ranking(qid, [], meta.get("scorer") or stage))
        return run

    def _store(self, stage: str, key: str, cfg: Any, run: Run, seconds: float) -> Path:
        run_p = self.out / f"{stage}.run"
        write_run(run, run_p, tag=stage)
        scorers = sorted({r.scorer for r in run.values()})
        meta = {"cache_format": CACHE_FORMAT, "stage": stage, "key": key, "config": cfg,
                "scorer": scorers[0] if len(scorers) == 1 else ",".join(scorers),
                "n_queries": len(run), "n_pairs": run.n_pairs, "seconds": round(seconds, 3),
                "empty_queries": [q for q, r in run.items() if not len(r)],
                **({"report": self.reports[stage]} if stage in self.reports else {}),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with atomic_write(self.out / f"{stage}.meta.json") as fh:  # last: marks a valid cache
            json.dump(meta, fh, indent=2, default=str)
            fh.write("\n")
        return run_p

    def _stage(self, stage: str, cfg: Any, upstream: str | None, compute,
               result: PipelineResult) -> tuple[Run, str]:
        key = config_hash({"stage": cfg, "upstream": upstream, "base": self._base_key()})
        t0 = time.perf_counter()
        run = self._cached(stage, key)
        cached = run is not None
        if run is None:
            log.info("stage %s: computing (key %s)", stage, key)
            run = compute()
            run.name = stage
            self._store(stage, key, cfg, run, time.perf_counter() - t0)
            result.recomputed.append(stage)
        else:
            log.info("stage %s: re-using %s (key %s)", stage, self.out / f"{stage}.run", key)
        scorers = sorted({r.scorer for r in run.values()})
        result.stages.append(StageResult(stage, key, cached, time.perf_counter() - t0,
                                         self.out / f"{stage}.run", len(run), run.n_pairs,
                                         ",".join(scorers)))
        return run, key

    # -------------------------------------------------------------- stages
    def _retrieve_source(self, source: str, spec: Any, queries: dict[str, Query]) -> Run:
        if source == "candidates":
            cand = self.dataset.run
            if cand is None:
                raise ConfigError(f"dataset {self.cfg['dataset']!r} has no candidate run")
            return Run({q: cand[q] for q in queries if q in cand}, name="candidates")
        k = spec.get("k", 100)
        if source == "bm25":
            from rankstack.retrieve.bm25 import BM25Index

            backend = spec.get("backend", "auto")
            if spec.get("index_dir"):
                index = BM25Index.load(spec["index_dir"], backend=backend)
            else:
                params = {p: spec[p] for p in ("k1", "b", "backend") if p in spec}
                index = BM25Index.build(self._corpus(spec["corpus"]).values(),
                                        show_progress=self.show_progress, **params)
            return index.search(queries, k, show_progress=self.show_progress, name="bm25")
        from rankstack.retrieve.dense import (
            DenseIndex,
            build_dense_index,
            load_encoder,
            load_encoder_for_index,
        )

        enc_settings = dict(spec.get("settings") or {})
        settings = {p: spec[p] for p in ("mode", "hnsw_m", "ef_search", "ef_construction")
                    if p in spec}
        if spec.get("index_dir"):
            # an existing index is queried with the encoder its manifest names
            index_dir = Path(spec["index_dir"])
            encoder = load_encoder_for_index(index_dir, spec.get("model"), spec.get("family"),
                                             **enc_settings)
        else:
            encoder = load_encoder(model=spec.get("model"), family=spec.get("family"),
                                   **enc_settings)
            # keyed by what the vectors depend on (not k or search settings)
            ident = {p: spec.get(p) for p in ("corpus", "model", "family", "settings")}
            if spec["corpus"] != "dataset":
                if not Path(spec["corpus"]).is_file():
                    raise InputError("corpus file does not exist", path=spec["corpus"],
                                     field="retrieve.dense.corpus")
                st = Path(spec["corpus"]).stat()
                ident["corpus_stat"] = [st.st_size, st.st_mtime_ns]
            else:
                ident["dataset"] = self.cfg["dataset"]
            index_dir = self.out / f"dense-index-{config_hash(ident)}"
            if not (index_dir / "rankstack.json").is_file() or self.force:
                build_dense_index(self._corpus(spec["corpus"]), encoder, index_dir,
                                  show_progress=self.show_progress)
        dense = DenseIndex.load(index_dir, encoder, **settings)
        return dense.search(queries, k, batch_size=spec.get("batch_size", 64),
                            show_progress=self.show_progress, name="dense")

    def _retrieve(self, queries: dict[str, Query]) -> Run:
        from rankstack.retrieve.fusion import fuse

        r = self.cfg["retrieve"]
        runs = [self._retrieve_source(s, r[s], queries)
                for s in ("candidates", "bm25", "dense") if r.get(s)]
        if len(runs) == 1:
            run = runs[0]
        else:
            f = dict(r.get("fusion") or {})
            run = fuse(runs, method=f.get("method", "rrf"), k=f.get("k", 60.0),
                       norm=f.get("norm", "minmax"), weights=f.get("weights"),
                       depth=f.get("depth"), missing=f.get("missing", "min"), name="retrieve")
        return run.top(r.get("depth"))

    def _retrieve_key_cfg(self) -> dict[str, Any]:
        """The retrieve config plus the manifests of prebuilt indexes (so a rebuilt index
        invalidates the cache)."""
        r = json.loads(json.dumps(self.cfg["retrieve"], default=str))
        for s in ("bm25", "dense"):
            if r.get(s) and r[s].get("index_dir"):
                m = Path(r[s]["index_dir"]) / "rankstack.json"
                r[s]["_manifest"] = m.read_text(encoding="utf-8") if m.is_file() else None
            if r.get(s) and r[s].get("corpus") not in (None, "dataset"):
                p = Path(r[s]["corpus"])
                st = p.stat() if p.is_file() else None
                r[s]["_corpus_stat"] = [st.st_size, st.st_mtime_ns] if st else None
        return r

    def _rerank(self, st: Mapping[str, Any], run: Run, queries: dict[str, Query]) -> Run:
        from rankstack.rerank.spec import SPEC_KEYS, load_reranker

        spec = {k: st[k] for k in SPEC_KEYS if st.get(k) is not None}
        settings = dict(st.get("settings") or {})
        settings.setdefault("show_progress", self.show_progress)
        spec["settings"] = settings
        ckey = config_hash(spec)
        cache = self.reranker_cache
        reranker = cache.get(ckey) if cache is not None else None
        if reranker is None:
            reranker = load_reranker(spec, where=f"rerank stage {st['name']!r}")
            if cache is not None:
                cache[ckey] = reranker
        try:
            out = reranker.rerank(run, queries, self.docs(), depth=st["depth"])
            if reranker.last_report is not None:
                self.reports[st["name"]] = reranker.last_report.to_dict()
            return out
        finally:
            if cache is None:
                reranker.close()

    # ----------------------------------------------------------------- run
    def run(self) -> PipelineResult:
        self.out.mkdir(parents=True, exist_ok=True)
        queries = self.queries()
        ev_cfg = self.cfg["evaluate"]
        measures = list(ev_cfg.get("measures") or ["nDCG@10", "RR@10", "R@100"])
        result = PipelineResult(self.cfg["name"], self.out, [], [], len(queries))
        run, key = self._stage("retrieve", self._retrieve_key_cfg(), None,
                               lambda: self._retrieve(queries), result)
        runs = {"retrieve": run}
        for st in self.cfg["rerank"]:
            prev = run
            run, key = self._stage(st["name"], st, key,
                                   lambda st=st, prev=prev: self._rerank(st, prev, queries),
                                   result)
            runs[st["name"]] = run
        qrels = self.dataset.qrels
        if qrels is not None:
            from rankstack.datasets import DATASETS
            from rankstack.evaluate import Evaluator

            spec = DATASETS.get(self.cfg["dataset"])
            sub = Qrels({q: j for q, j in qrels.judgments.items() if q in queries}, qrels.name)
            if sub.judgments:
                ev = Evaluator(measures, sub, binary_rel=spec.binary_rel if spec else 1,
                               missing=ev_cfg.get("missing", "zero"))
                result.measures = list(ev.names)
                report = {}
                for s in result.stages:
                    res = ev.evaluate(runs[s.name], name=s.name)
                    s.metrics = dict(res.aggregates)
                    report[s.name] = {"aggregates": res.aggregates, "counts": res.counts(),
                                      "key": s.key}
                with atomic_write(self.out / "evaluation.json") as fh:
                    json.dump(report, fh, indent=2)
                    fh.write("\n")
            else:
                log.warning("no judged query among the %d selected: nothing to evaluate",
                            len(queries))
        else:
            log.warning("dataset %r has no qrels: evaluation skipped", self.cfg["dataset"])
        return result


def run_pipeline(cfg: Mapping[str, Any] | str | os.PathLike[str], *, force: bool = False,
                 show_progress: bool = True) -> PipelineResult:
    """Run a pipeline from a config mapping or a YAML file path."""
    if not isinstance(cfg, Mapping):
        from rankstack.config import load_yaml

        cfg = load_yaml(cfg)
    return Pipeline(cfg, force=force, show_progress=show_progress).run()
