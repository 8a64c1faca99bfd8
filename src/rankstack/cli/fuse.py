"""``rankstack fuse``: fuse TREC runs with RRF or normalized CombSUM/CombMNZ."""

from __future__ import annotations

import argparse

from rankstack.cli._common import add_config_arg, say


def add_parser(sub) -> None:
    p = sub.add_parser("fuse", help="fuse several TREC runs (RRF, CombSUM, CombMNZ)",
                       description="Fuse runs. Queries in only some runs are fused over the runs "
                                   "that have them (counted and reported).")
    add_config_arg(p)
    p.add_argument("runs", nargs="+", metavar="RUN", help="TREC run files, retrieve-results JSON, or dataset names (their candidate run)")
    p.add_argument("--method", choices=["rrf", "combsum", "combmnz"], default="rrf")
    p.add_argument("--norm", choices=["minmax", "zscore", "none"], default="minmax",
                   help="per-query score normalization for combsum/combmnz")
    p.add_argument("--k", type=float, default=60.0, help="RRF constant k (score = 1/(k + rank))")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="one weight per run (default: all 1)")
    p.add_argument("--depth", type=int, default=None,
                   help="use the top DEPTH of each input and keep the top DEPTH fused docs")
    p.add_argument("--missing", choices=["min", "zero"], default="min",
                   help="combsum/combmnz: score of a doc a run did not retrieve")
    p.add_argument("--tag", default=None, help="run tag of the output (default fused-METHOD)")
    p.add_argument("--out", required=True, help="output TREC run file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rankstack.errors import InputError
    from rankstack.io import write_run
    from rankstack.retrieve.fusion import FusionStats, fuse
    from rankstack.sources import load_run_arg

    runs = [load_run_arg(r, "RUN") for r in args.runs]
    for arg, r in zip(args.runs, runs, strict=True):
        if len(r) == 0 or r.n_pairs == 0:
            raise InputError("run has no candidates: nothing to fuse", path=arg)
    stats = FusionStats()
    fused = fuse(runs, method=args.method, k=args.k, norm=args.norm, weights=args.weights,
                 depth=args.depth, missing=args.missing, name=args.tag, stats=stats)
    write_run(fused, args.out)
    say(f"fused {stats.n_runs} runs, {stats.n_queries} queries -> {args.out} "
          f"({fused.n_pairs} pairs, scorer {next(iter(fused.values())).scorer if fused else '-'})")
    if stats.partial_queries:
        say(f"  {stats.partial_queries} queries were in only some runs "
              f"(fused over the runs that have them)")
    if stats.constant_rankings:
        say(f"  {stats.constant_rankings} input rankings had all-equal scores")
    return 0
