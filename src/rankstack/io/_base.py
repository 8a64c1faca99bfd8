"""Shared plumbing for readers and writers: text lines with locations, atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from rankstack.errors import InputError

log = logging.getLogger("rankstack.io")

OnError = Literal["raise", "skip"]


class ErrorPolicy:
    """What a reader does with a bad record: ``raise`` (default) or ``skip`` and count.

    In skip mode every skipped record is kept in :attr:`skipped` (the InputError naming its
    file and line) and one warning with the count is logged when the file is done.
    """

    def __init__(self, on_error: OnError = "raise", skipped: list[InputError] | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.skipped = skipped if skipped is not None else []

    def handle(self, err: InputError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped.append(err)

    def report(self, path: str | os.PathLike[str], before: int) -> None:
        n = len(self.skipped) - before
        if n:
            log.warning("%s: skipped %d bad record(s); first: %s", path, n, self.skipped[before])


def open_text(path: str | os.PathLike[str]) -> IO[bytes]:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError("file does not exist", path=p)
    if os.path.isdir(p):
        raise InputError("is a directory, expected a file", path=p)
    try:
        return gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path=p) from None


BOM = "\ufeff"


def check_input_file(path: str | os.PathLike[str], what: str = "input") -> None:
    """An input path must be an existing, readable regular file (InputError naming it)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        parent = os.path.dirname(p)
        why = f" (no directory {parent})" if parent and not os.path.isdir(parent) else ""
        raise InputError(f"{what} file does not exist{why}", path=p)
    if os.path.isdir(p):
        raise InputError(f"{what} is a directory, expected a file", path=p)
    if not os.path.isfile(p):  # a pipe (<(...)) or device: reading to test it would consume it
        if not os.access(p, os.R_OK):
            raise InputError(f"{what} cannot be read (no read permission)", path=p)
        return
    try:  # os.access is not enough (root, ACLs, network mounts): open it
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(f"{what} file cannot be read: {exc.strerror or exc}", path=p) from None


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """An output path must be creatable: not a directory, and its nearest existing ancestor a
    writable directory (missing parent directories are created when the file is written).
    Checked before any expensive work; creates nothing."""
    p = Path(os.fspath(path))
    if p.is_dir():
        raise InputError(f"{what} path is a directory, expected a file name", path=p)
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{what}: {anc} is not a directory, so {p.name} cannot be created "
                         f"under it", path=p)
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{what} exists and cannot be overwritten (not writable)", path=p)
    try:  # os.access is not enough (root, read-only mounts): try it
        fd, tmp = tempfile.mkstemp(prefix=".rankstack-", suffix=".probe", dir=anc)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{what} cannot be written: {anc}: {exc.strerror or exc}",
                         path=p) from None


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> None:
    """An output directory must be a directory (or creatable) and writable."""
    p = Path(os.fspath(path))
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} is a file, expected a directory", path=p)
    check_output_file(p / ".rankstack-probe", what)


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped); non-UTF-8 bytes raise InputError.

    A UTF-8 byte order mark at the start of the file is dropped (never part of an id).
    """
    no = 0
    with open_text(path) as fh:
        it = iter(fh)
        while True:
            try:
                raw = next(it)
            except StopIteration:
                break
            except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated .gz
                raise InputError(f"cannot read compressed data: {exc}", path=path,
                                 line=no + 1) from None
            no += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
                    path=path, line=no,
                ) from None
            if no == 1 and line.startswith(BOM):
                line = line[1:]
            yield no, line.rstrip("\r\n")


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole (decompressed) file; a corrupt .gz raises InputError."""
    with open_text(path) as fh:
        try:
            return fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"cannot read compressed data: {exc}", path=path) from None


def check_token(value: str, *, what: str, field: str) -> str:
    """Writers of whitespace-separated formats: an id must be non-empty with no whitespace,
    and encodable as UTF-8 (a lone surrogate is not)."""
    if not value or any(c.isspace() for c in value):
        raise InputError(f"{what} {value!r} cannot be written: ids must be non-empty and "
                         f"contain no whitespace", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} {value!r} cannot be written: not encodable as UTF-8 "
                         f"({exc.reason} at position {exc.start})", field=field) from None
    return value


# ASCII only: int()/float() would also take "1_000" and non-ASCII digits such as "١٢".
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                       r"|inf|infinity|nan)\Z", re.IGNORECASE)


def parse_float(value: str, *, path: str | os.PathLike[str], line: int, field: str) -> float:
    try:
        if not _FLOAT_RE.match(value):
            raise ValueError(value)
        x = float(value)
    except ValueError:
        raise InputError(f"not a number: {value!r}", path=path, line=line, field=field) from None
    if not math.isfinite(x):
        raise InputError(f"not a finite number: {value!r}", path=path, line=line, field=field)
    return x


def parse_int(value: str, *, path: str | os.PathLike[str], line: int, field: str) -> int:
    try:
        if not _INT_RE.match(value):
            raise ValueError(value)
        return int(value)
    except ValueError:
        raise InputError(f"not an integer: {value!r}", path=path, line=line, field=field) from None


def check_id(value: str, *, path: str | os.PathLike[str], line: int, field: str) -> str:
    if not value:
        raise InputError("empty id", path=path, line=line, field=field)
    return value


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Write to a temp file in the target directory, fsync, then rename over ``path``.

    A crash mid-write leaves the old file (or none), never a truncated one. ``.gz`` paths are
    gzip-compressed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes 0600 files; give the result the mode a plain open() would (or keep
        # the mode of the file it replaces).
        os.chmod(tmp, _target_mode(target))
        binary = "b" in mode
        with os.fdopen(fd, "wb") as raw:
            if target.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as gz:
                    fh = gz if binary else _TextWrapper(gz)
                    yield fh
            elif binary:
                yield raw
            else:
                with open(raw.fileno(), "w", encoding="utf-8", closefd=False, newline="\n") as fh:
                    yield fh
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _target_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


class _TextWrapper:
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def write(self, s: str) -> int:
        return self._raw.write(s.encode("utf-8"))
