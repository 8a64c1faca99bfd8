"""``rankstack fit --config train.yaml``: train a student (Lightning): ``family`` cross-encoder
(default), rankllama or bi-encoder.

The YAML holds :class:`~rankstack.train.fit.TrainConfig` keys at the top level and a ``data``
section choosing the training groups:

.. code-block:: yaml

    out_dir: models/student
    loss: ranknet
    max_steps: 200
    data:
      teacher_run: runs/teacher.txt   # distillation (TeacherGroupBuilder) ...
      # qrels: dl19 / candidates: run.txt  ... or qrels + hard negatives (QrelsGroupBuilder)
      sources: [dl21, dl22]           # datasets (or run files) giving query and passage text
      topics: []                      # extra topics files
      corpus: []                      # extra JSONL corpora
      strategy: top_and_random
      targets: rank

Several ``--config`` files stack; ``--set key=value`` (dotted for ``data.*``, YAML values)
overrides them. The resolved config is saved with the model.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from rankstack.config import apply_overrides, key_lines, load_yaml, merge
from rankstack.errors import ConfigError


@dataclass
class DataConfig:
    """The ``data`` section: where the training groups come from (validated by its types)."""

    teacher_run: str | None = None  # a teacher run (distillation): dataset name or TREC file
    qrels: str | None = None  # or qrels (dataset name or file) + candidates
    candidates: str | None = None
    sources: list[str] = field(default_factory=list)  # datasets/run files giving the texts
    topics: list[str] = field(default_factory=list)
    corpus: list[str] = field(default_factory=list)
    strategy: str | None = None
    targets: Literal["rank", "score"] = "rank"
    ties: Literal["ordinal", "competition"] = "ordinal"  # teacher-score ties, rank targets
    depth: int | None = None
    pad: bool = False
    binary_rel: int | None = None  # qrels: grade counted relevant (default: the qrels' own, else 1)
    on_missing_doc: Literal["skip_doc", "skip_query"] | None = None
    seed: int | None = None


DATA_KEYS = {f.name for f in dataclasses.fields(DataConfig)}
_RENAMED = {"min_relevance": "binary_rel", "min_grade": "binary_rel"}


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="train a student (family: cross-encoder, rankllama or "
                                   "bi-encoder; or, with task: pe-rank, a PE-Rank stage) from a "
                                   "YAML config")
    p.add_argument("--config", action="append", default=[], metavar="YAML", required=True,
                   help="training config (repeatable; later files override earlier)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set max_steps=10 --set data.strategy=top")
    p.add_argument("--devices", default=None, help="override devices (e.g. 2 for DDP)")
    p.add_argument("--strategy", default=None, help="override Lightning strategy (e.g. ddp)")
    p.set_defaults(func=run, raw_config=True)


def _schemas():
    from rankstack.schema import from_dataclass
    from rankstack.train.fit import TrainConfig

    return (from_dataclass(TrainConfig, "'rankstack fit'"),
            from_dataclass(DataConfig, "the 'data' section of 'rankstack fit'"))


TASKS = ("cross-encoder", "pe-rank")


def _task(docs: list[Any]) -> str:
    """The config's ``task`` (the last file naming one wins; default ``cross-encoder``)."""
    task = "cross-encoder"
    for d in docs:
        if isinstance(d, dict) and "task" in d:
            task = d["task"]
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    return task


def _validate(data: dict[str, Any], origin: str, lines: dict[str, int],
              task: str = "cross-encoder") -> dict[str, Any]:
    if task == "pe-rank":  # PE-Rank stages: their own sections (rankstack.llm.pe_rank.fit)
        from rankstack.llm.pe_rank.fit import validate_config

        return validate_config(data, origin, lines)
    train_schema, data_schema = _schemas()
    top = dict(data)
    top.pop("task", None)
    section = top.pop("data", None)
    out = train_schema.validate(top, origin, lines)
    if section is not None:
        if not isinstance(section, dict):
            raise ConfigError(f"{origin}:{lines.get('data', '?')}: key 'data': expected a "
                              f"mapping, got {section!r}")
        for old, new in _RENAMED.items():
            if old in section:
                raise ConfigError(f"{origin}: key 'data.{old}' is now 'data.{new}' (one name "
                                  f"for the relevance threshold everywhere)")
        out["data"] = data_schema.validate(section, origin, {}, prefix="data.")
    return out


def resolve(paths: list[str], sets: list[str]) -> dict[str, Any]:
    """Stack the YAML files (each validated), then the ``--set`` overrides (validated too)."""
    cfg: dict[str, Any] = {}
    docs = [load_yaml(p) for p in paths]
    over = apply_overrides({}, sets) if sets else None
    task = _task([*docs, over])
    for p, d in zip(paths, docs, strict=True):
        cfg = merge(cfg, _validate(d, str(p), key_lines(p), task))
    if over is not None:
        cfg = merge(cfg, _validate(over, "--set", {}, task))
    return cfg


def build_groups(data: dict[str, Any], group_size: int, seed: int):
    from rankstack.sources import load_qrels_arg, load_run_arg, load_sources
    from rankstack.train.data import QrelsGroupBuilder, TeacherGroupBuilder

    unknown = set(data) - DATA_KEYS
    if unknown:
        raise ConfigError(f"unknown data keys: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(DATA_KEYS))})")
    src = load_sources(data.get("sources") or [], topics=data.get("topics") or [],
                       corpus=data.get("corpus") or [])
    common: dict[str, Any] = dict(n_docs=group_size, pad=bool(data.get("pad")),
                                  seed=seed if data.get("seed") is None else data["seed"])
    if data.get("on_missing_doc"):
        common["on_missing_doc"] = data["on_missing_doc"]
    if data.get("teacher_run"):
        teacher = load_run_arg(data["teacher_run"], "data.teacher_run")
        return TeacherGroupBuilder(src.queries, src.docs, teacher,
                                   strategy=data.get("strategy") or "top",
                                   targets=data.get("targets") or "rank", depth=data.get("depth"),
                                   ties=data.get("ties") or "ordinal", **common)
    if (data.get("ties") or "ordinal") != "ordinal":
        raise ConfigError("data.ties applies to teacher rank targets: it needs data.teacher_run")
    if data.get("qrels"):
        qrels = load_qrels_arg(data["qrels"], "data.qrels")
        c = data.get("candidates")
        if c is None:
            if not src.runs:
                raise ConfigError("data.qrels needs data.candidates or a source with a run")
            cands = src.runs[0]
        else:
            cands = load_run_arg(c, "data.candidates")
        return QrelsGroupBuilder(src.queries, src.docs, qrels, cands,
                                 strategy=data.get("strategy") or "single_relevant",
                                 binary_rel=data.get("binary_rel"), depth=data.get("depth"), **common)
    raise ConfigError("the data section needs teacher_run (distillation) or qrels (+ candidates)")


def check_data_paths(data: dict[str, Any], out_dir: str) -> None:
    """The data section's files and the output directory, before any model is built."""
    from rankstack.io._base import check_output_dir
    from rankstack.sources import classify

    for key in ("teacher_run", "qrels", "candidates"):
        if data.get(key):
            classify(data[key], f"data.{key}")
    for key in ("sources", "topics", "corpus"):
        for item in data.get(key) or []:
            classify(item, f"data.{key}")
    check_output_dir(out_dir, "out_dir")


def run(args: argparse.Namespace) -> int:
    from rankstack.cli._common import say
    from rankstack.train.fit import TrainConfig, fit

    cfg = resolve(args.config, args.set)
    task = cfg.get("task", "cross-encoder")
    if task == "pe-rank":  # both PE-Rank stages on the same trainer (rankstack.llm.pe_rank.fit)
        from rankstack.llm.pe_rank.fit import run_config

        if args.devices is not None:
            cfg["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
        if args.strategy is not None:
            cfg["strategy"] = args.strategy
        res = run_config(cfg)
        say(f"model: {res.model_dir}  steps: {res.steps}  wall: {res.wall_time_s:.1f} s"
              + (f"  resumed from {res.resumed_from}" if res.resumed_from else ""))
        return 0
    if task != "cross-encoder":
        raise ConfigError(f"{', '.join(args.config)}: task must be 'cross-encoder' (default) "
                          f"or 'pe-rank', not {task!r}")
    cfg.pop("task", None)
    data = cfg.pop("data", None)
    if not isinstance(data, dict):
        raise ConfigError(f"{', '.join(args.config)}: missing 'data' section")
    tc = TrainConfig(**cfg)
    if args.devices is not None:
        tc.devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.strategy is not None:
        tc.strategy = args.strategy
    check_data_paths(data, tc.out_dir)
    builder = build_groups(data, tc.group_size, tc.seed)
    say(f"training groups: {len(builder)} ({builder.stats.summary()})")
    res = fit(tc, builder)
    say(f"model: {res.model_dir}  steps: {res.steps}  wall: {res.wall_time_s:.1f} s"
          + (f"  resumed from {res.resumed_from}" if res.resumed_from else ""))
    return 0
