"""What every subcommand shares: --config stacking and validation, path checks before any
work, the resolved config written beside each run, and the output convention.

Output convention: a command's *result* goes to stdout (evaluation tables and figures, the
dataset list); everything else (progress bars, what was written where, counts, warnings)
goes to stderr, so ``rankstack evaluate ... > table.txt`` captures only the table and
``rankstack rerank ... 2> log`` keeps stdout clean. Use :func:`say` for the latter.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rankstack.config import key_lines, load_yaml
from rankstack.errors import ConfigError

#: What each command's path options are, checked by :func:`preflight` before any model load
#: or scoring. Kinds: ``source`` (dataset name or file, see :mod:`rankstack.sources`),
#: ``file`` (an input file), ``in_dir`` (an existing directory), ``out`` (an output file),
#: ``out_dir`` (an output directory), ``journal`` (an output file whose job journals to
#: ``<out>.journal.jsonl``: also locked, so two processes on one --out fail at once).
PATHS: dict[str, dict[str, str]] = {
    "index": {"corpus": "source", "index_dir": "out_dir"},
    "retrieve": {"index_dir": "in_dir", "queries": "source", "out": "out"},
    "corpus": {"sources": "source", "out": "out"},
    "evaluate": {"runs": "source", "qrels": "source", "json": "out", "plot": "out"},
    "teach": {"runs": "source", "topics": "source", "corpus": "source", "out": "journal",
              "cache_dir": "out_dir"},
    "compare": {"dataset": "source", "run": "file", "topics": "file", "corpus": "file",
                "qrels": "file", "out_dir": "out_dir", "json": "out", "plot": "out",
                "markdown": "out"},
    "rerank": {"candidates": "source", "run": "file", "topics": "file", "corpus": "file",
               "out": "journal", "stats": "out", "cache_dir": "out_dir"},
    "llm-rerank": {"candidates": "source", "run": "file", "topics": "file", "corpus": "file",
                   "out": "journal", "stats": "out", "cache_dir": "out_dir"},
    "fuse": {"runs": "source", "out": "out"},
    "pipeline": {"dataset": "source", "output_dir": "out_dir"},
    "serve": {"corpus": "file", "dataset": "source", "index": "in_dir", "token_file": "file"},
}

#: Commands that write a run to ``--out``: the resolved config goes to ``<out>.config.yaml``.
RUN_WRITERS = ("retrieve", "rerank", "llm-rerank", "fuse", "teach")

_INTERNAL = {"func", "_required", "config", "raw_config", "command", "verbose", "help"}


def say(*parts: Any) -> None:
    """A log line for the user (stderr): what was done, counts, where output went."""
    print(*parts, file=sys.stderr)


def result_console():
    """A rich Console for result tables on stdout: the terminal's width on a terminal, 160
    columns when piped (so a logged table is not squeezed to 80)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="YAML config (repeatable; later files override earlier; flags override all)")


def apply_configs(parser: argparse.ArgumentParser, argv: list[str],
                  args: argparse.Namespace) -> argparse.Namespace:
    """Re-parse with YAML values as defaults so explicit flags still win. Each file is
    validated against the command's schema (derived from its options) first."""
    from rankstack.schema import from_parser

    paths = getattr(args, "config", None)
    if not paths or getattr(args, "raw_config", False):  # the command reads its YAML itself
        return args
    sub = _subparser(parser, args.command)
    schema = from_parser(sub, f"'rankstack {args.command}'",
                         skip=("help", "config", "version", "func", "_required", "raw_config"))
    values: dict[str, Any] = {}
    for path in paths:
        data = load_yaml(path)
        values.update(schema.validate(data, str(path), key_lines(path)))
    sub.set_defaults(**values)
    new = parser.parse_args(argv)
    new.config = paths
    return new


def check_required(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options marked required must be set by a flag or by a --config file."""
    missing = [flag for dest, flag in getattr(args, "_required", [])
               if getattr(args, dest, None) in (None, [])]
    if missing:
        _subparser(parser, args.command).error(
            f"the following arguments are required: {', '.join(missing)} "
            f"(on the command line or as keys in a --config file)")


def preflight(args: argparse.Namespace) -> None:
    """Check every path option of the command (see :data:`PATHS`) before any work: inputs
    exist, are files (or directories where one is expected) and are readable; outputs are not
    directories and can be created. Journaled outputs are locked here, for the whole run."""
    from rankstack.io._base import check_input_file, check_output_dir, check_output_file
    from rankstack.sources import classify

    for dest, kind in PATHS.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is None or value == [] or value == "":
            continue
        items = value if isinstance(value, list | tuple) else [value]
        flag = _flag(args, dest)
        for item in items:
            if not isinstance(item, str | os.PathLike):
                raise ConfigError(f"{flag}: expected a path or name, got {item!r}")
            if kind == "source":
                classify(item, flag)
            elif kind == "file":
                check_input_file(item, flag)
            elif kind == "in_dir":
                _check_in_dir(item, flag)
            elif kind == "out":
                check_output_file(item, flag)
            elif kind == "out_dir":
                check_output_dir(item, flag)
            elif kind == "journal":
                from rankstack.io.journal import acquire_lock, journal_path
                from rankstack.rerank.predict import launched_rank

                check_output_file(item, flag)
                check_output_file(journal_path(item), f"{flag} journal")
                if launched_rank() == 0:  # other ranks of the job lock their own journals
                    acquire_lock(journal_path(item))
    if args.command in RUN_WRITERS and getattr(args, "out", None):
        check_output_file(config_path(args.out), "--out config")


def _flag(args: argparse.Namespace, dest: str) -> str:
    positional = {"evaluate": {"runs": "RUN"}, "fuse": {"runs": "RUN"}}
    return positional.get(args.command, {}).get(dest) or "--" + dest.replace("_", "-")


def _check_in_dir(path: str | os.PathLike[str], what: str) -> None:
    from rankstack.errors import InputError

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"{what}: directory does not exist", path=p)
    if not os.path.isdir(p):
        raise InputError(f"{what}: expected a directory, found a file", path=p)
    if not os.access(p, os.R_OK | os.X_OK):
        raise InputError(f"{what}: directory cannot be read", path=p)


def config_path(out: str | os.PathLike[str]) -> str:
    return os.fspath(out) + ".config.yaml"


def resolved_config(args: argparse.Namespace,
                    parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """The command's options after flags and --config files, as YAML-able values (only the
    command's declared options, so the result loads back as ``--config``)."""
    known = None
    if parser is not None:
        known = {a.dest for a in _subparser(parser, args.command)._actions}
    out: dict[str, Any] = {}
    for k, v in sorted(vars(args).items()):
        if k in _INTERNAL or k.startswith("_") or callable(v) or (known and k not in known):
            continue
        out[k] = _plain(v)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        # KEY=VALUE settings parsed to tuples read back as "key=value" strings
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return {str(a): _plain(b) for a, b in v}
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(a): _plain(b) for a, b in v.items()}
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def write_run_config(args: argparse.Namespace, argv: list[str],
                     parser: argparse.ArgumentParser | None = None) -> str | None:
    """Write ``<out>.config.yaml`` beside a run: loadable as ``--config`` to redo it."""
    if args.command not in RUN_WRITERS or not getattr(args, "out", None):
        return None
    if not os.path.exists(os.fspath(args.out)):
        return None
    import yaml

    from rankstack import __version__
    from rankstack.io import atomic_write

    path = config_path(args.out)
    cfg = resolved_config(args, parser)
    with atomic_write(path) as fh:
        fh.write(f"# rankstack {args.command}, rankstack {__version__}; the resolved options "
                 f"(flags over --config files).\n# Re-run with: rankstack {args.command} "
                 f"--config {path}\n# argv: {' '.join(argv)}\n")
        yaml.safe_dump(cfg, fh, sort_keys=True, allow_unicode=True)
    return path


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)
