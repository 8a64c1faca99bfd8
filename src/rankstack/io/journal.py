"""Append-only JSONL journals of finished rankings, so long jobs resume after a kill.

Line 1 is a header (a JSON object naming the job: model, settings, input fingerprint). Every
further line is one finished query: ``{"q": qid, "s": scorer, "d": [[doc_id, score], ...]}``.
Lines are flushed and fsynced per batch. On reading, a header that differs from the job's is
refused (ConfigError: the journal belongs to another job), a torn *last* line (killed
mid-write) is ignored so that query is simply redone, and any other corrupt line is an
InputError naming the line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from rankstack.errors import ConfigError, InputError
from rankstack.records import Ranking, ScoredDoc

log = logging.getLogger(__name__)


class RankingJournal:
    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = json.loads(json.dumps(header))  # normalised as it will read back

    def load(self) -> dict[str, Ranking]:
        """Rankings already recorded (empty if there is no journal yet)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return {}
        lines = self.path.read_text(encoding="utf-8").split("\n")
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
                raise InputError(f"corrupt journal line: {exc}", path=self.path, line=no) from None
            if ranking is None:
                if rec != self.header:
                    raise ConfigError(f"{self.path}: journal of another job ({rec}); expected "
                                      f"{self.header}. Remove it or write elsewhere.")
                continue
            done[ranking.query_id] = ranking
        return done

    @contextlib.contextmanager
    def writer(self) -> Iterator[_Writer]:
        """Append rankings; creates the file with its header when new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8") as fh:
            if not new:
                _drop_torn_tail(self.path, fh)
            else:
                fh.write(json.dumps(self.header) + "\n")
            yield _Writer(fh)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _Writer:
    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh

    def write(self, rankings: Iterable[Ranking]) -> None:
        for r in rankings:
            self._fh.write(json.dumps({"q": r.query_id, "s": r.scorer,
                                       "d": [[d.doc_id, d.score] for d in r.docs]}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())


def _drop_torn_tail(path: Path, fh: IO[str]) -> None:
    """Cut an unterminated last line so the next record starts on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        fh.truncate(data.rfind(b"\n") + 1)
        fh.seek(0, os.SEEK_END)
