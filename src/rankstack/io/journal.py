"""Append-only JSONL journals of finished rankings, so long jobs resume after a kill.

Line 1 is a header (a JSON object naming the job: model, settings and a **content hash** of
the inputs, see :func:`content_hash` / :func:`inputs_fingerprint`; never file paths, so a
file replaced between a kill and a rerun is noticed). Every further line is one finished
query: ``{"q": qid, "s": scorer, "d": [[doc_id, score], ...]}``, flushed and fsynced as it is
written (:meth:`_Writer.write_one` per query). On reading, a header that differs from the
job's is refused (ConfigError: the inputs or settings changed, the journal's rankings are
stale), a torn *last* line (killed mid-write) is ignored so that query is simply redone, and
any other corrupt line is an InputError naming the line and saying how to recover.

One writer at a time: :meth:`RankingJournal.lock` takes an exclusive ``flock`` on
``<journal>.lock`` (held until :meth:`RankingJournal.unlock` or process exit), so a second
process on the same ``--out`` fails at once with a ConfigError instead of interleaving lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from rankstack.errors import ConfigError, InputError
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.jsonl"

# Locks this process holds, by resolved journal path (a process may lock early, in the CLI,
# and again where the journal is written).
_HELD: dict[str, tuple[int, int]] = {}  # path -> (fd, depth)


def journal_path(out: str | os.PathLike[str]) -> Path:
    """The journal of an output file: ``<out>.journal.jsonl``."""
    return Path(os.fspath(out) + JOURNAL_SUFFIX)


def content_hash(obj: Any) -> str:
    """SHA-256 (hex, 16 chars) of the canonical JSON of ``obj``; Runs, Rankings, Queries and
    Docs are hashed by content (ids, scores, texts)."""
    h = hashlib.sha256()
    h.update(json.dumps(_canon(obj), sort_keys=True, ensure_ascii=False,
                        separators=(",", ":")).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def inputs_fingerprint(run: Run, queries: Mapping[str, Query] | None = None,
                       docs: Mapping[str, Doc] | None = None,
                       depth: int | None = None) -> str:
    """Content hash of what a re-ranking job reads: the candidates (ids, order, scores) and
    the text of every query and passage they name (only those)."""
    parts: list[Any] = []
    for qid, ranking in run.items():
        head = ranking.docs if depth is None else ranking.docs[:depth]
        q = queries.get(qid) if queries is not None else None
        entry: list[Any] = [qid, None if q is None else q.text,
                            [[d.doc_id, d.score] for d in ranking.docs]]
        if docs is not None:
            entry.append([None if (doc := docs.get(d.doc_id)) is None else doc.full_text
                          for d in head])
        parts.append(entry)
    return content_hash(parts)


def _canon(obj: Any) -> Any:
    if isinstance(obj, Run):
        return {q: _canon(r) for q, r in obj.items()}
    if isinstance(obj, Ranking):
        return [[d.doc_id, d.score] for d in obj.docs]
    if isinstance(obj, Query):
        return obj.text
    if isinstance(obj, Doc):
        return obj.full_text
    if isinstance(obj, Mapping):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canon(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


class RankingJournal:
    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = json.loads(json.dumps(header))  # normalised as it will read back
        self._locked = False

    # -- locking ------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return Path(str(self.path) + ".lock")

    def lock(self) -> RankingJournal:
        """Take the journal's exclusive lock (re-entrant within this process)."""
        if not self._locked:
            acquire_lock(self.path)
            self._locked = True
        return self

    def unlock(self) -> None:
        if self._locked:
            release_lock(self.path)
            self._locked = False

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> dict[str, Ranking]:
        """Rankings already recorded (empty if there is no journal yet)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return {}
        if self.path.is_dir():
            raise InputError("journal path is a directory", path=self.path)
        try:
            lines = self.path.read_bytes().decode("utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the journal ({exc}); {self._recover()}",
                             path=self.path) from None
        last = max((i for i, x in enumerate(lines, 1) if x.strip()), default=0)
        done: dict[str, Ranking] = {}
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                ranking = None if no == 1 else Ranking(
                    rec["q"], [ScoredDoc(d, float(s)) for d, s in rec["d"]], rec.get("s", "unknown"))
            except (ValueError, KeyError, TypeError) as exc:
                if no == last and no > 1:
                    log.warning("%s:%d: ignoring a torn last line (interrupted write)", self.path, no)
                    continue
                raise InputError(f"corrupt journal line ({exc}); {self._recover(no)}",
                                 path=self.path, line=no) from None
            if ranking is None:
                if rec != self.header:
                    raise ConfigError(
                        f"{self.path}: journal of another job: {_header_diff(rec, self.header)}. "
                        f"Its rankings would be stale, so nothing is resumed from it: remove it "
                        f"to start over, or write to another --out.")
                continue
            done[ranking.query_id] = ranking
        return done

    def _recover(self, line: int | None = None) -> str:
        keep = (f"or delete line {line} (and any other damaged line) to keep the rest"
                if line and line > 1 else "")
        return f"to recover, delete {self.path} to start over (finished queries are redone) {keep}"\
            .rstrip()

    # -- writing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self) -> Iterator[_Writer]:
        """Append rankings (under the lock); creates the file with its header when new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = self._locked
        self.lock()
        try:
            new = not self.path.exists() or self.path.stat().st_size == 0
            with open(self.path, "a", encoding="utf-8") as fh:
                if not new:
                    _drop_torn_tail(self.path, fh)
                else:
                    fh.write(json.dumps(self.header) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                yield _Writer(fh)
        finally:
            if not held:
                self.unlock()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _Writer:
    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh

    def write(self, rankings: Iterable[Ranking]) -> None:
        """Append rankings, then flush and fsync once."""
        for r in rankings:
            self._fh.write(json.dumps({"q": r.query_id, "s": r.scorer,
                                       "d": [[d.doc_id, d.score] for d in r.docs]}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write_one(self, ranking: Ranking) -> None:
        """Append one finished query and make it durable (the per-query resume point)."""
        self.write([ranking])


def _header_diff(found: Any, expected: dict[str, Any]) -> str:
    if not isinstance(found, dict):
        return f"header {found!r}, expected {expected}"
    diffs = [k for k in sorted(set(found) | set(expected)) if found.get(k) != expected.get(k)]
    named = {"inputs": "the inputs changed (candidates, query or passage texts)",
             "candidates": "the inputs changed (candidates, query or passage texts)",
             "config_hash": "the settings changed", "settings": "the settings changed"}
    why = [named.get(k, f"{k}: {found.get(k)!r} there, {expected.get(k)!r} now") for k in diffs]
    return "; ".join(dict.fromkeys(why)) or "different header"


def _drop_torn_tail(path: Path, fh: IO[str]) -> None:
    """Cut an unterminated last line so the next record starts on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        fh.truncate(data.rfind(b"\n") + 1)
        fh.seek(0, os.SEEK_END)


# -- locks --------------------------------------------------------------------------------------
def acquire_lock(journal: str | os.PathLike[str]) -> None:
    """Exclusive, non-blocking lock of ``<journal>.lock``; ConfigError if another process holds
    it. Re-entrant within one process (counted)."""
    import fcntl

    key = os.path.abspath(os.fspath(journal))
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        return
    lock = key + ".lock"
    os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot create the journal lock: {exc.strerror or exc}",
                             path=lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(lock)
            raise ConfigError(
                f"{journal}: another rankstack process{holder} is writing this job (lock "
                f"{lock} is held). Wait for it to finish, or write to another --out.") from None
        try:  # the holder before us may have removed the file: lock the one on disk
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            _HELD[key] = (fd, 1)
            return
        os.close(fd)
    raise ConfigError(f"{lock}: could not take the journal lock (the file keeps changing)")


def release_lock(journal: str | os.PathLike[str]) -> None:
    key = os.path.abspath(os.fspath(journal))
    if key not in _HELD:
        return
    fd, depth = _HELD[key]
    if depth > 1:
        _HELD[key] = (fd, depth - 1)
        return
    del _HELD[key]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(key + ".lock")
    os.close(fd)


def _read_pid(lock: str) -> str:
    try:
        pid = Path(lock).read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def release_all_locks() -> None:
    """Release every journal lock this process holds (the CLI calls this on exit)."""
    for key in list(_HELD):
        _HELD[key] = (_HELD[key][0], 1)
        release_lock(key)
