"""The project's error types. Every error a user can cause is one of these."""

from __future__ import annotations

import os


class RankstackError(Exception):
    """Base class of every error rankstack raises on purpose."""


class InputError(RankstackError, ValueError):
    """Bad input data, located as precisely as we can: ``file:line: field: problem``."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")


class ConfigError(RankstackError, ValueError):
    """A configuration value (YAML, CLI flag or API argument) that cannot be used."""


class MissingDependencyError(RankstackError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        why = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is required{why} but is not installed: "
            f"pip install 'rankstack[{extra}]' (or pip install {package})"
        )


def require(module: str, extra: str, purpose: str = "", package: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Only a missing *top-level* module becomes MissingDependencyError; an ImportError raised
    from inside an installed package is a real bug and propagates unchanged.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingDependencyError(package or module, extra, purpose) from exc
