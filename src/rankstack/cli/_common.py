"""Helpers shared by subcommands: --config stacking, output paths, tables."""

from __future__ import annotations

import argparse
from typing import Any

from rankstack.config import load_configs
from rankstack.errors import ConfigError


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="YAML config (repeatable; later files override earlier; flags override all)")


def apply_configs(parser: argparse.ArgumentParser, argv: list[str],
                  args: argparse.Namespace) -> argparse.Namespace:
    """Re-parse with YAML values as defaults so explicit flags still win."""
    paths = getattr(args, "config", None)
    if not paths or getattr(args, "raw_config", False):  # the command reads its YAML itself
        return args
    cfg = load_configs(paths)
    sub = _subparser(parser, args.command)
    known = {a.dest for a in sub._actions}
    values: dict[str, Any] = {}
    for key, val in cfg.items():
        dest = key.replace("-", "_")
        if dest not in known or dest in ("config", "help"):
            raise ConfigError(f"{', '.join(paths)}: unknown key {key!r} for "
                              f"'rankstack {args.command}' (known: {', '.join(sorted(known - {'help', 'config'}))})")
        values[dest] = val
    sub.set_defaults(**values)
    new = parser.parse_args(argv)
    new.config = paths
    return new


def check_required(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options marked required must be set by a flag or by a --config file."""
    missing = [flag for dest, flag in getattr(args, "_required", []) if getattr(args, dest, None) is None]
    if missing:
        _subparser(parser, args.command).error(
            f"the following arguments are required: {', '.join(missing)} "
            f"(on the command line or as keys in a --config file)")


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)
