"""``rankstack teach``: pool candidates from several runs and rank them with a teacher."""

from __future__ import annotations

import argparse
import json

from rankstack.cli._common import add_config_arg


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
    p.add_argument("--model", default=None, help="teacher model (default: bundled MiniLM bi-encoder)")
    p.add_argument("--family", default=None, help="teacher model family (see rankstack rerank)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--on-missing-doc", choices=["raise", "skip"], default="raise")
    p.add_argument("--out", required=True, help="teacher run (TREC); provenance JSON beside it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rankstack.distill.teach import pool_candidates, pool_stats_dict, teach
    from rankstack.distill.teachers import load_teacher
    from rankstack.sources import load_sources

    src = load_sources(args.runs, topics=args.topics, corpus=args.corpus)
    pooled, stats = pool_candidates(src.runs, args.depth, src.queries, src.docs,
                                    on_missing_doc=args.on_missing_doc)
    if args.max_queries is not None:
        keep = list(pooled)[: args.max_queries]
        pooled = type(pooled)({q: pooled[q] for q in keep}, pooled.name)
    print(f"pooled {len(pooled)} queries, {pooled.n_pairs} pairs from {len(src.runs)} runs "
          f"(depth {args.depth}): {json.dumps(pool_stats_dict(stats))}")
    teacher, teacher_id = load_teacher(args.model, args.family, batch_size=args.batch_size,
                                       threads=args.threads)
    cfg = {"runs": args.runs, "depth": args.depth, "model": args.model, "family": args.family,
           "max_queries": args.max_queries}
    result = teach(teacher, teacher_id, pooled, src.queries, src.docs, args.out, config=cfg)
    print(f"teacher run: {args.out} ({result.provenance['queries']} queries, "
          f"{result.provenance['pairs']} pairs; resumed {result.resumed_queries}, "
          f"scored {result.scored_queries}) in {result.provenance['wall_time_s_this_invocation']} s")
    return 0
