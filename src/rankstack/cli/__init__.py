"""The ``rankstack`` command line: a thin layer over the Python API.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
:data:`COMMANDS` is the explicit list. Every subcommand takes ``--config FILE`` (repeatable,
stacked in order); YAML keys are the long option names (``--out-dir`` -> ``out_dir``), each
file validated against the command's options (unknown keys, wrong types: an error naming file,
line, key and expected type), and flags given on the command line win over the files.

Before a command does any work, its path options are checked (:func:`_common.preflight`);
a command that writes a run also writes its resolved options to ``<out>.config.yaml``. Every
error a user can cause exits with status 2 and one ``rankstack CMD: error: ...`` line on
stderr; results go to stdout, logs and progress to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rankstack.errors import RankstackError

COMMANDS: dict[str, str] = {
    "index": "rankstack.cli.index",
    "retrieve": "rankstack.cli.retrieve",
    "corpus": "rankstack.cli.corpus",
    "evaluate": "rankstack.cli.evaluate",
    "compare": "rankstack.cli.compare",
    "datasets": "rankstack.cli.datasets",
    "teach": "rankstack.cli.teach",
    "fit": "rankstack.cli.fit",
    "rerank": "rankstack.cli.rerank",
    "llm-rerank": "rankstack.cli.llm_rerank",
    "fuse": "rankstack.cli.fuse",
    "pipeline": "rankstack.cli.pipeline",
    "serve": "rankstack.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    from rankstack import __version__

    parser = argparse.ArgumentParser(prog="rankstack", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rankstack {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    # Required options may come from a --config YAML, so argparse must not insist on them;
    # check_required() enforces them after the configs are applied.
    for sp in sub.choices.values():
        required = [a for a in sp._actions if a.required and a.option_strings]
        for a in required:
            a.required = False
        # the same for positionals taking one or more values (RUN ...): they may be YAML keys
        positional = [a for a in sp._actions if not a.option_strings and a.nargs == "+"]
        for a in positional:
            a.nargs, a.required = "*", False
        sp.set_defaults(_required=[(a.dest, a.option_strings[-1]) for a in required]
                        + [(a.dest, a.metavar or a.dest) for a in positional])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    from rankstack.io.journal import release_all_locks

    try:
        from rankstack.cli._common import (
            apply_configs,
            check_required,
            preflight,
            say,
            write_run_config,
        )

        args = apply_configs(parser, argv, args)
        check_required(parser, args)
        preflight(args)
        rc = int(args.func(args) or 0)
        if rc == 0:
            path = write_run_config(args, argv, parser)
            if path:
                say(f"resolved options -> {path}")
        return rc
    except RankstackError as exc:
        print(f"rankstack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file-system failure mid-run (disk full, permissions changed)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rankstack {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        release_all_locks()


if __name__ == "__main__":
    sys.exit(main())
