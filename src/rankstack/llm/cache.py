"""On-disk cache of LLM calls (sqlite), so interrupted runs resume and reruns are free.

The key is a SHA-256 of the canonical JSON of: the backend identity (kind, model id and
settings that change outputs, see ``LLMBackend.cache_identity``), the template id
(``name@vN``), the call kind (``generate`` / ``logprobs``), the full input (prompt or chat
messages) and the generation parameters. Every insert is committed at once (sqlite's
journal + fsync), so a crash loses at most the call in flight. Decoding is greedy, so a
cached answer is the answer the model would give again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
  key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, kind TEXT NOT NULL,
  value TEXT NOT NULL, created REAL NOT NULL)"""


def cache_key(model: str, template: str, kind: str, payload: Any) -> str:
    blob = json.dumps({"model": model, "template": template, "kind": kind, "input": payload},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LLMCache:
    """A sqlite file ``<dir>/llm_calls.sqlite`` of key -> JSON result; thread-safe."""

    FILENAME = "llm_calls.sqlite"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        from rankstack.errors import InputError

        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError("cache directory is a file, expected a directory", path=self.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the cache directory: {exc.strerror or exc}",
                             path=self.dir) from None
        self.path = self.dir / self.FILENAME
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            # Keys are content hashes (model, template, full prompt), so a fresh cache only
            # costs the calls again; nothing stale can be served from it.
            raise InputError(f"LLM call cache is unusable ({exc}); to recover, delete it to "
                             f"start a fresh cache (finished calls are redone)",
                             path=self.path) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict[str, Any], *, model: str, template: str, kind: str) -> None:
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls(key, model, template, kind, value, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (key, model, template, kind, blob, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
