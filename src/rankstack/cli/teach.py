"""``rankstack teach``: pool candidates from several runs and rank them with a teacher.

The teacher is a re-ranker spec (as in ``rankstack rerank``): ``--model/--family/--preset/
--backend/--set``, or ``teacher:`` in a ``--config`` YAML (e.g. ``family: llm-listwise`` with a
GGUF model, or ``family: fusion`` with ``members``). Resumable: finished queries are journaled,
and LLM teachers with a ``cache_dir`` setting re-use every finished window's answer.
"""

from __future__ import annotations

import argparse
import json

from rankstack.cli._common import add_config_arg, say
from rankstack.cli.rerank import (
    _yaml_value,
    add_device_args,
    add_spec_args,
    launch_ranks,
    place_on,
    spec_from_args,
)


def add_parser(sub) -> None:
    p = sub.add_parser("teach", help="pool first-stage runs and rank the pool with a teacher "
                                     "(resumable)")
    add_config_arg(p)
    p.add_argument("--runs", nargs="+", required=True,
                   help="candidate runs: dataset names (their candidate run, queries and "
                        "passages) and/or TREC run files")
    p.add_argument("--topics", nargs="*", default=[], help="topics files for run files")
    p.add_argument("--corpus", nargs="*", default=[], help="JSONL corpora for run files")
    p.add_argument("--depth", type=int, default=100, help="candidates taken from each run")
    p.add_argument("--max-queries", type=int, default=None, help="only the first N pooled queries")
    p.add_argument("--sample", type=int, default=None,
                   help="only a seeded random subset of N pooled queries (kept in pool order), "
                        "e.g. to cover every run in a short job")
    p.add_argument("--pool-top", type=int, default=None,
                   help="keep each query's first N pooled candidates (by best rank) ...")
    p.add_argument("--pool-random", type=int, default=0,
                   help="... plus M drawn at random (seeded by --seed and the query id) from "
                        "the rest of its top --depth: a deep pool at a fraction of the cost")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample and --pool-random")
    add_spec_args(p, what="teacher")
    p.add_argument("--teacher", type=_yaml_value, default=None,
                   help="the teacher as a whole spec (YAML/JSON; in a --config file: the key "
                        "'teacher')")
    p.add_argument("--batch-size", type=int, default=None, help="pointwise teachers: batch size")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the teacher")
    p.add_argument("--on-missing-doc", choices=["raise", "skip"], default="raise")
    p.add_argument("--chunk-size", type=int, default=8,
                   help="queries ranked between two journal writes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="teacher run (TREC); provenance JSON beside it")
    add_device_args(p)
    p.set_defaults(func=run)


def check_runs(args: argparse.Namespace, src) -> None:
    """Never silently drop work: an empty candidate run, or run queries without text (a
    topics file lacking some), is an error naming the inputs, found before any model load."""
    from rankstack.errors import InputError

    for spec, r in zip(args.runs, src.runs, strict=True):
        if len(r) == 0 or r.n_pairs == 0:
            raise InputError("candidate run has no candidates: nothing to teach", path=spec)
    qids = list(dict.fromkeys(q for r in src.runs for q in r))
    missing = [q for q in qids if q not in src.queries]
    if missing:
        where = ", ".join(map(str, args.topics)) or "the given sources (no --topics)"
        raise InputError(f"{len(missing)} of {len(qids)} pooled queries have no text in "
                         f"{where} (first: {', '.join(missing[:5])}); add their topics, or "
                         f"drop them from the runs", field="topics")


def check_pool(args: argparse.Namespace, src, pooled) -> None:
    from rankstack.errors import InputError

    if len(pooled) == 0 or pooled.n_pairs == 0:
        raise InputError(f"no pooled candidates from {', '.join(map(str, args.runs))}: "
                         f"nothing to teach")


def run(args: argparse.Namespace) -> int:
    from rankstack.distill.teach import (
        pool_candidates,
        pool_stats_dict,
        subsample_pool,
        teach,
    )
    from rankstack.distill.teachers import load_teacher
    from rankstack.errors import ConfigError
    from rankstack.sources import load_sources

    spec = spec_from_args(args, base=args.teacher)
    settings = {"batch_size": args.batch_size, "threads": args.threads}
    src = load_sources(args.runs, topics=args.topics, corpus=args.corpus)
    check_runs(args, src)
    pooled, stats = pool_candidates(src.runs, args.depth, src.queries, src.docs,
                                    on_missing_doc=args.on_missing_doc)
    if args.pool_random and args.pool_top is None:
        raise ConfigError("pool_random needs pool_top (how many head candidates to keep whole)")
    if args.pool_top is not None:
        pooled = subsample_pool(pooled, args.pool_top, args.pool_random, args.seed)
    if args.sample is not None:
        import random

        if args.sample < 1:
            raise ConfigError(f"--sample must be a positive integer, got {args.sample}")
        picked = set(random.Random(args.seed).sample(list(pooled), min(args.sample,
                                                                       len(pooled))))
        pooled = type(pooled)({q: pooled[q] for q in pooled if q in picked}, pooled.name)
    if args.max_queries is not None:
        keep = list(pooled)[: args.max_queries]
        pooled = type(pooled)({q: pooled[q] for q in keep}, pooled.name)
    check_pool(args, src, pooled)  # before the teacher is loaded
    # the ranks start after the inputs were checked, before the teacher is loaded (each rank
    # loads its own)
    ranks = launch_ranks(args, spec)
    if ranks.is_zero:
        say(f"pooled {len(pooled)} queries, {pooled.n_pairs} pairs from {len(src.runs)} runs "
            f"(depth {args.depth}): {json.dumps(pool_stats_dict(stats))}")
    teacher, teacher_id = load_teacher(spec=place_on(spec, ranks), **settings)
    cfg = {"runs": args.runs, "depth": args.depth,
           "teacher": teacher.spec.to_dict(),  # type: ignore[attr-defined]
           "max_queries": args.max_queries, "sample": args.sample, "seed": args.seed}
    if args.pool_top is not None:  # absent otherwise: earlier teacher runs' hashes still hold
        cfg["pool"] = {"top": args.pool_top, "random": args.pool_random}
    try:
        result = teach(teacher, teacher_id, pooled, src.queries, src.docs, args.out, config=cfg,
                       chunk_size=args.chunk_size, show_progress=not args.no_progress,
                       ranks=ranks)
    finally:
        teacher.close()
    if result is None:
        return 0  # not rank 0: rank 0 merged the journals and wrote the run
    say(f"teacher run: {args.out} ({result.provenance['queries']} queries, "
          f"{result.provenance['pairs']} pairs; resumed {result.resumed_queries}, "
          f"scored {result.scored_queries}) in {result.provenance['wall_time_s_this_invocation']} s")
    if result.report is not None:
        say(f"teacher report (this invocation): {result.report.summary()}")
    return 0
