"""``rankstack fit --config train.yaml``: train a cross-encoder student (Lightning).

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
from typing import Any

import yaml

from rankstack.config import load_configs, merge
from rankstack.errors import ConfigError

DATA_KEYS = {"teacher_run", "qrels", "candidates", "sources", "topics", "corpus", "strategy",
             "targets", "depth", "pad", "min_relevance", "on_missing_doc", "seed"}


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="train a cross-encoder student (or, with task: pe-rank, a "
                                   "PE-Rank stage) from a YAML config")
    p.add_argument("--config", action="append", default=[], metavar="YAML", required=True,
                   help="training config (repeatable; later files override earlier)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set max_steps=10 --set data.strategy=top")
    p.add_argument("--devices", default=None, help="override devices (e.g. 2 for DDP)")
    p.add_argument("--strategy", default=None, help="override Lightning strategy (e.g. ddp)")
    p.set_defaults(func=run, raw_config=True)


def resolve(paths: list[str], sets: list[str]) -> dict[str, Any]:
    cfg = load_configs(paths)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        node: dict[str, Any] = {}
        cur = node
        parts = key.split(".")
        for k in parts[:-1]:
            cur = cur.setdefault(k, {})
        cur[parts[-1]] = yaml.safe_load(value)
        cfg = merge(cfg, node)
    return cfg


def build_groups(data: dict[str, Any], group_size: int, seed: int):
    from rankstack.datasets import DATASETS, load_dataset
    from rankstack.io import read_qrels, read_run
    from rankstack.sources import load_sources
    from rankstack.train.data import QrelsGroupBuilder, TeacherGroupBuilder

    unknown = set(data) - DATA_KEYS
    if unknown:
        raise ConfigError(f"unknown data keys: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(DATA_KEYS))})")
    src = load_sources(data.get("sources", []), topics=data.get("topics", []),
                       corpus=data.get("corpus", []))
    common = dict(n_docs=group_size, seed=data.get("seed", seed), pad=data.get("pad", False))
    if "on_missing_doc" in data:
        common["on_missing_doc"] = data["on_missing_doc"]
    if data.get("teacher_run"):
        teacher = read_run(data["teacher_run"])
        return TeacherGroupBuilder(src.queries, src.docs, teacher,
                                   strategy=data.get("strategy", "top"),
                                   targets=data.get("targets", "rank"), depth=data.get("depth"),
                                   **common)
    if data.get("qrels"):
        q = data["qrels"]
        qrels = load_dataset(q).qrels if q in DATASETS else read_qrels(q)
        c = data.get("candidates")
        if c is None:
            if not src.runs:
                raise ConfigError("data.qrels needs data.candidates or a source with a run")
            cands = src.runs[0]
        else:
            cands = load_dataset(c).run if c in DATASETS else read_run(c)
        return QrelsGroupBuilder(src.queries, src.docs, qrels, cands,
                                 strategy=data.get("strategy", "single_relevant"),
                                 min_relevance=data.get("min_relevance", 1),
                                 depth=data.get("depth"), **common)
    raise ConfigError("the data section needs teacher_run (distillation) or qrels (+ candidates)")


def run(args: argparse.Namespace) -> int:
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
        print(f"model: {res.model_dir}  steps: {res.steps}  wall: {res.wall_time_s:.1f} s"
              + (f"  resumed from {res.resumed_from}" if res.resumed_from else ""))
        return 0
    if task != "cross-encoder":
        raise ConfigError(f"{', '.join(args.config)}: task must be 'cross-encoder' (default) "
                          f"or 'pe-rank', not {task!r}")
    cfg.pop("task", None)
    data = cfg.pop("data", None)
    if not isinstance(data, dict):
        raise ConfigError(f"{', '.join(args.config)}: missing 'data' section")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(cfg) - fields
    if unknown:
        raise ConfigError(f"{', '.join(args.config)}: unknown keys {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(fields))})")
    tc = TrainConfig(**cfg)
    if args.devices is not None:
        tc.devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.strategy is not None:
        tc.strategy = args.strategy
    builder = build_groups(data, tc.group_size, tc.seed)
    print(f"training groups: {len(builder)} ({builder.stats.summary()})")
    res = fit(tc, builder)
    print(f"model: {res.model_dir}  steps: {res.steps}  wall: {res.wall_time_s:.1f} s"
          + (f"  resumed from {res.resumed_from}" if res.resumed_from else ""))
    return 0
