"""Quality and cost side by side: re-rank one candidate run with several re-rankers, evaluate
them with the one :class:`~rankstack.evaluate.Evaluator` (significance vs a baseline), and
measure each one's cost the benchmark way.

How cost is measured (also written into every table caption and JSON):

* each model runs in its **own fresh process** (:mod:`rankstack.evaluate._compare_worker`),
  all started with the same thread settings (``threads`` for torch / llama.cpp and the
  ``OMP_NUM_THREADS`` family); models are loaded one after another (load time: one load);
* the **quality pass** re-ranks all selected queries through the normal resumable path
  (:func:`rankstack.rerank.load_reranker`, ``rerank(..., journal=)``, plus the LLM call cache
  for LLM families; a finished run is re-used when its spec and candidates are unchanged) and
  is what the quality columns evaluate;
* then a **warm-up** query, then ``repeats`` **timing passes, interleaved** across models (the
  model order rotates each round); in a pass each timing query is re-ranked alone, caches off;
  per query the median over passes is kept; p50/p95 are over queries; pairs/s is the median
  over passes of pairs / pass seconds;
* **memory**: see :mod:`rankstack.evaluate.efficiency` (the process's resident high-water
  mark, reset after interpreter + rankstack + dataset; CUDA peak when a GPU was used).

A row ``candidates`` is the first-stage run itself (no model, no cost measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rankstack.config import config_hash
from rankstack.errors import ConfigError, InputError
from rankstack.evaluate import efficiency as eff
from rankstack.evaluate.compare_report import CompareResult
from rankstack.evaluate.compare_spec import (  # noqa: F401 - re-exported
    CANDIDATES,
    SPEC_KEYS,
    CompareSettings,
    DatasetArgs,
    ModelCost,
    ModelSpec,
    parse_model,
)


class _Proc:
    """A worker process: JSON lines on stdin, replies on its stdout."""

    def __init__(self, label: str, threads: int) -> None:
        env = dict(os.environ) | eff.thread_env(threads)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.label = label
        self.p = subprocess.Popen(
            [sys.executable, "-m", "rankstack.evaluate._compare_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8")

    def ask(self, cmd: str, **kw: Any) -> dict[str, Any]:
        assert self.p.stdin is not None and self.p.stdout is not None
        try:
            self.p.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.p.stdout.readline()
        if not line:
            code = self.p.wait()
            raise RuntimeError(f"{self.label}: worker exited (code {code}) during {cmd!r}")
        reply = json.loads(line)
        if not reply.get("ok"):
            if reply.get("config_error"):
                raise ConfigError(f"model {self.label!r}: {reply['error']}")
            raise RuntimeError(f"model {self.label!r} failed in {cmd}: {reply['error']}\n"
                               f"{reply.get('traceback', '')}")
        return reply

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def compare(data: DatasetArgs, models: Sequence[ModelSpec], out_dir: str | os.PathLike[str],
            settings: CompareSettings | None = None, *, progress: bool = False
            ) -> CompareResult:
    """Re-rank with every model, evaluate, measure; runs go to ``out_dir/runs/LABEL.run``.
    ``progress``: one line per step on stderr."""

    def say(text: str) -> None:
        if progress:
            print(f"compare: {text}", file=sys.stderr, flush=True)

    from rankstack.datasets import DATASETS, load_dataset
    from rankstack.evaluate import Evaluator
    from rankstack.io import atomic_write, read_run, write_run

    s = settings or CompareSettings()
    s.check()
    if not models:
        raise ConfigError("no models to compare")
    labels = [m.label for m in models]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"duplicate model labels: {', '.join(dup)} (name them LABEL=SPEC)")
    _check_specs(models)
    ds = load_dataset(data.name, run=data.run, topics=data.topics, corpus=data.corpus,
                      qrels=data.qrels)
    if ds.run is None:
        raise ConfigError(f"{data.name}: no candidate run to re-rank (give --run)")
    if ds.qrels is None:
        raise ConfigError(f"{data.name}: no qrels to evaluate against (give --qrels)")
    if not ds.docs and any(not m.is_candidates for m in models):
        raise ConfigError(f"{data.name}: no passage texts (give candidates with passages or "
                          f"--corpus)")
    if data.name in DATASETS and data.qrels is None:
        ds.qrels.name = data.name  # as 'rankstack evaluate --qrels dl19' names it
    all_qids = list(ds.run.rankings)[:s.max_queries]
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    fingerprint = config_hash({"data": data.to_dict(), "qids": all_qids})

    runs: dict[str, Any] = {}
    procs: dict[str, _Proc] = {}
    loaded: dict[str, dict[str, Any]] = {}
    quality: dict[str, dict[str, Any]] = {}
    try:
        for m in models:
            qids = all_qids[:m.max_queries]
            if m.is_candidates:  # written too, so 'rankstack evaluate' can re-check the table
                runs[m.label] = _restrict(ds.run, qids, name=m.label)
                write_run(runs[m.label], out / "runs" / f"{_safe(m.label)}.run",
                          tag=_safe(m.label))
                continue
            p = procs[m.label] = _Proc(m.label, s.threads)
            timing = qids[:m.timing_queries or s.timing_queries]
            spec = run_spec(m.spec, s.threads, out / "llm-cache" / _safe(m.label))
            loaded[m.label] = p.ask("load", dataset=data.to_dict(), spec=spec, qids=qids,
                                    timing_qids=timing, depth=m.depth)
            say(f"{m.label}: loaded in {loaded[m.label]['load_s']:.1f}s")
        for m in models:
            if m.is_candidates:
                continue
            path = out / "runs" / f"{_safe(m.label)}.run"
            meta = out / "runs" / f"{_safe(m.label)}.meta.json"
            key = config_hash({"spec": m.spec, "depth": m.depth, "max_queries": m.max_queries,
                               "candidates": fingerprint})
            if path.exists() and meta.exists() and _meta_key(meta) == key:
                quality[m.label] = {"reused": True, **json.loads(meta.read_text())}
            else:
                say(f"{m.label}: quality pass over {len(all_qids[:m.max_queries])} queries")
                rep = procs[m.label].ask("quality", run_path=str(path), tag=_safe(m.label))
                quality[m.label] = {"reused": False, "key": key, "seconds": rep["seconds"],
                                    "report": rep["report"]}
                with atomic_write(meta) as fh:
                    json.dump({"key": key, "spec": m.spec, "seconds": rep["seconds"],
                               "report": rep["report"]}, fh, indent=1)
            runs[m.label] = read_run(path)
            runs[m.label].name = m.label
        measured = [m.label for m in models if not m.is_candidates]
        for label in measured:
            if s.warmup:
                procs[label].ask("warmup", queries=s.warmup)
        passes: dict[str, list[dict[str, Any]]] = {label: [] for label in measured}
        for r in range(s.repeats):
            order = measured[r % len(measured):] + measured[:r % len(measured)] if measured \
                else []
            for label in order:
                say(f"timing pass {r + 1}/{s.repeats}: {label}")
                passes[label].append(procs[label].ask("time"))
        memory = {label: procs[label].ask("finish")["memory"] for label in measured}
    finally:
        for p in procs.values():
            p.close()

    costs = {label: _cost(label, loaded[label], quality[label], passes[label], memory[label])
             for label in passes}
    ev = Evaluator(s.measures, ds.qrels, binary_rel=s.binary_rel, missing=s.missing)
    baseline = s.baseline if s.baseline is not None else labels[0]
    if baseline not in labels:
        raise ConfigError(f"baseline {baseline!r} is not one of the models: {', '.join(labels)}")
    comp = ev.compare({label: runs[label] for label in labels}, baseline=baseline,
                      tests=s.tests, rounds=s.rounds, seed=s.seed, alpha=s.alpha)
    reference = s.reference or (measured[0] if measured else None)
    if reference is not None and reference not in costs:
        raise ConfigError(f"reference {reference!r} is not a measured model "
                          f"({', '.join(costs) or 'none'})")
    return CompareResult(comp, costs, s, reference, data, {m.label: m for m in models})


def _restrict(run, qids, name: str | None = None):
    from rankstack.records import Run

    missing = [q for q in qids if q not in run.rankings]
    if missing:
        raise InputError(f"queries {missing[:3]} are not in run {run.name!r}")
    return Run({q: run[q] for q in qids}, name=name or run.name)


def _meta_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("key")
    except (OSError, json.JSONDecodeError):
        return None  # unreadable meta: the run is redone


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-+" else "_" for c in label)


def _check_specs(models: Sequence[ModelSpec]) -> None:
    """Specs must resolve (family or preset known, keys and types right) before any process
    is started."""
    from rankstack.rerank.spec import resolve_spec

    for m in models:
        if not m.is_candidates:
            resolve_spec(m.spec, where=f"model {m.label!r}")


_LLM_FAMILIES = ("llm-listwise", "llm-pointwise")


def run_spec(spec: Mapping[str, Any], threads: int, cache_dir: Path) -> dict[str, Any]:
    """The spec a worker loads: the same ``threads`` for every model (where the family takes
    it; the thread environment covers the rest) and an LLM call cache under the output dir
    (what makes an LLM quality pass resumable). Settings the user gave win."""
    from rankstack.rerank.spec import resolve_spec

    s = resolve_spec(spec).to_dict()
    fam = s.get("family")
    settings = dict(s.get("settings") or {})
    if fam == "fusion":
        s["members"] = [run_spec(m, threads, cache_dir / f"member{i}")
                        for i, m in enumerate(s["members"])]
    elif fam in _LLM_FAMILIES:
        if s.get("backend") in ("hf", "gguf"):
            settings.setdefault("threads", threads)
        settings.setdefault("cache_dir", str(cache_dir))
    elif fam is None or fam not in _NOT_THREADED:
        settings.setdefault("threads", threads)
    s["settings"] = settings
    return s


#: families without a ``threads`` setting (the worker's thread environment applies)
_NOT_THREADED = ("bm25", "pe-rank")


def _cost(label: str, loaded: dict[str, Any], quality: dict[str, Any],
          passes: list[dict[str, Any]], memory: dict[str, Any]) -> ModelCost:
    qids = list(passes[0]["latency_s"]) if passes else []
    per_q = {q: eff.median([p["latency_s"][q] for p in passes]) for q in qids}
    lat_ms = [v * 1000 for v in per_q.values()]
    pps, cps = [], []
    for p in passes:
        secs = sum(p["latency_s"].values())
        pps.append(p["totals"]["pairs"] / secs if secs > 0 else float("nan"))
        cps.append(p["totals"]["llm_calls"] / secs if secs > 0 else float("nan"))
    tot = passes[-1]["totals"] if passes else {}
    n = max(1, len(qids))
    llm = bool(tot.get("llm_calls"))
    return ModelCost(
        label=label, name=loaded["name"], load_s=loaded["load_s"],
        quality_s=None if quality.get("reused") else quality.get("seconds"),
        pairs_per_s=eff.median(pps), p50_ms=eff.percentile(lat_ms, 50),
        p95_ms=eff.percentile(lat_ms, 95), timing_queries=len(qids),
        pairs_per_query=tot.get("pairs", 0) / n, memory=memory,
        memory_after_load=loaded.get("memory_after_load") or {},
        llm_calls_per_query=tot["llm_calls"] / n if llm else None,
        prompt_tokens_per_query=tot["prompt_tokens"] / n if llm else None,
        completion_tokens_per_query=tot["completion_tokens"] / n if llm else None,
        calls_per_s=eff.median(cps) if llm else None, passes=passes,
        quality_report=quality.get("report") or {})


__all__ = ["CompareResult", "CompareSettings", "DatasetArgs", "ModelCost", "ModelSpec",
           "compare", "parse_model"]
