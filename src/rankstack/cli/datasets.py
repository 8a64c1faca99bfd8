"""``rankstack datasets``: list the named datasets and where their files are."""

from __future__ import annotations

import argparse

from rankstack.cli._common import add_config_arg


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list named datasets")
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rankstack.datasets import DATASETS, data_dir

    root = data_dir()
    print(f"data directory: {root}")
    for name, spec in DATASETS.items():
        files = [f for f in (spec.candidates, spec.qrels, spec.topics) if f]
        ok = all((root / f).exists() for f in files)
        print(f"  {name:20s} {'ok     ' if ok else 'MISSING'} {spec.description}")
    return 0
