"""``rankstack pipeline``: run retrieve -> re-rank -> evaluate from one YAML, with stage caching.

The YAML's top-level keys are this command's options (``dataset``, ``output_dir``, ``queries``,
``retrieve``, ``rerank``, ``evaluate``, ``name``); see :mod:`rankstack.pipeline`. On the
command line the mapping-valued options take YAML/JSON text, e.g.
``--queries '{limit: 3}'``.
"""

from __future__ import annotations

import argparse
from typing import Any

from rankstack.cli._common import add_config_arg, say


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML/JSON: {exc}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("pipeline", help="run a multi-stage pipeline from a YAML config",
                       description="Stages: retrieve (dataset candidates, BM25, dense, fused) "
                                   "-> re-rank (one or more) -> evaluate. Each stage's run is "
                                   "written under --output-dir and re-used while its config "
                                   "(and everything upstream) is unchanged.")
    add_config_arg(p)
    p.add_argument("--name", default=None, help="pipeline name (default: output dir name)")
    p.add_argument("--dataset", default=None, help="dataset name or retrieve-results JSON")
    p.add_argument("--output-dir", default=None, help="where stage runs and caches go")
    p.add_argument("--queries", type=_yaml_value, default=None,
                   help="query selection, e.g. '{limit: 3}' or '{ids: [\"1037798\"]}'")
    p.add_argument("--retrieve", type=_yaml_value, default=None, help="retrieve stage (YAML)")
    p.add_argument("--rerank", type=_yaml_value, default=None,
                   help="re-rank stage(s) (YAML mapping or list)")
    p.add_argument("--evaluate", type=_yaml_value, default=None,
                   help="evaluation, e.g. '{measures: [nDCG@10]}'")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rankstack.pipeline import Pipeline

    cfg = {k: getattr(args, k) for k in ("name", "dataset", "output_dir", "queries",
                                         "retrieve", "rerank", "evaluate")
           if getattr(args, k) is not None}
    result = Pipeline(cfg, force=args.force, show_progress=not args.no_progress).run()
    console = Console()
    if not console.is_terminal:  # piped/logged: don't squeeze the table to 80 columns
        console = Console(width=160)
    console.print(result.table())
    cached = [s.name for s in result.stages if s.cached]
    say(f"runs in {result.output_dir}; re-used: {', '.join(cached) or 'none'}; "
          f"computed: {', '.join(result.recomputed) or 'none'}")
    return 0
