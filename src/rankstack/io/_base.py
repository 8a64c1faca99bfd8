"""Shared plumbing for readers and writers: text lines with locations, atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
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
    return gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")  # noqa: SIM115


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped); non-UTF-8 bytes raise InputError."""
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
            yield no, line.rstrip("\r\n")


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole (decompressed) file; a corrupt .gz raises InputError."""
    with open_text(path) as fh:
        try:
            return fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"cannot read compressed data: {exc}", path=path) from None


def check_token(value: str, *, what: str, field: str) -> str:
    """Writers of whitespace-separated formats: an id must be non-empty with no whitespace."""
    if not value or any(c.isspace() for c in value):
        raise InputError(f"{what} {value!r} cannot be written: ids must be non-empty and "
                         f"contain no whitespace", field=field)
    return value


def parse_float(value: str, *, path: str | os.PathLike[str], line: int, field: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"not a number: {value!r}", path=path, line=line, field=field) from None
    if not math.isfinite(x):
        raise InputError(f"not a finite number: {value!r}", path=path, line=line, field=field)
    return x


def parse_int(value: str, *, path: str | os.PathLike[str], line: int, field: str) -> int:
    try:
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
