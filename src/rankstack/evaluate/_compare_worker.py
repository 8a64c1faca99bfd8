"""One model of a ``rankstack compare`` in its own fresh process (``python -m`` this module).

The parent (:mod:`rankstack.evaluate.compare`) starts it with the thread environment set
before any math library is imported, sends one JSON command per line on stdin and reads one
JSON reply per line. Replies travel on a duplicate of the original stdout; fd 1 itself is
pointed at stderr, so library prints (llama.cpp, progress bars) cannot corrupt the protocol.

Commands: ``load`` (dataset, then the memory mark reset, then
:func:`rankstack.rerank.load_reranker`, timed), ``quality``
(the full re-rank through the normal resumable path: journal / LLM cache; written as a TREC
run), ``warmup``, ``time`` (each timing query re-ranked alone, caches off), ``finish``
(memory high-water marks; exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _restrict(run, qids):
    from rankstack.records import Run

    return Run({q: run[q] for q in qids}, name=run.name)


def _parts(rr):
    """The re-ranker and, for a fusion, its members (recursively)."""
    yield rr
    for m in getattr(rr, "members", None) or []:
        yield from _parts(m)


def _set_progress(rr, on: bool) -> None:
    for part in _parts(rr):
        if hasattr(part, "show_progress"):
            part.show_progress = on


@contextlib.contextmanager
def _caches_off(rr):
    """Timing passes call the model: LLM call caches are detached meanwhile."""
    saved = [(p, p.cache) for p in _parts(rr) if getattr(p, "cache", None) is not None]
    for p, _ in saved:
        p.cache = None
    try:
        yield
    finally:
        for p, c in saved:
            p.cache = c


class _Worker:
    def __init__(self) -> None:
        self.rr = None

    def load(self, msg: dict[str, Any]) -> dict[str, Any]:
        from rankstack.datasets import load_dataset
        from rankstack.evaluate.efficiency import PeakMemory, uses_cuda
        from rankstack.rerank import load_reranker

        d = msg["dataset"]
        ds = load_dataset(d["name"], run=d.get("run"), topics=d.get("topics"),
                          corpus=d.get("corpus"))
        self.ds = ds
        self.qids = list(msg["qids"])
        self.timing_qids = list(msg["timing_qids"])
        self.depth = msg.get("depth")
        self.spec = msg["spec"]
        self.mem = PeakMemory()
        self.mem.start()
        t0 = time.perf_counter()
        self.rr = load_reranker(self.spec)
        load_s = time.perf_counter() - t0
        _set_progress(self.rr, False)
        if uses_cuda():
            self.mem.start_cuda()
        return {"load_s": load_s, "name": self.rr.name, "score_kind": self.rr.score_kind,
                "memory_after_load": self.mem.read()}

    def quality(self, msg: dict[str, Any]) -> dict[str, Any]:
        from rankstack.io import write_run

        out = Path(msg["run_path"])
        journal = Path(str(out) + ".journal.jsonl")
        t0 = time.perf_counter()
        run = self.rr.rerank(_restrict(self.ds.run, self.qids), self.ds.queries, self.ds.docs,
                             depth=self.depth, journal=journal)
        seconds = time.perf_counter() - t0
        write_run(run, out, tag=msg.get("tag"))
        journal.unlink(missing_ok=True)
        report = self.rr.last_report.to_dict()
        for key in ("per_query", "repairs_per_query"):
            report.pop(key, None)
        return {"seconds": seconds, "report": report, "queries": len(run)}

    def _one(self, qid: str) -> tuple[float, dict[str, Any]]:
        run = _restrict(self.ds.run, [qid])
        with _caches_off(self.rr):
            t0 = time.perf_counter()
            self.rr.rerank(run, self.ds.queries, self.ds.docs, depth=self.depth)
            seconds = time.perf_counter() - t0
        rep = self.rr.last_report
        return seconds, {"pairs": rep.pairs_scored, "llm_calls": rep.total.calls,
                         "prompt_tokens": rep.total.prompt_tokens,
                         "completion_tokens": rep.total.completion_tokens}

    def warmup(self, msg: dict[str, Any]) -> dict[str, Any]:
        n = int(msg.get("queries", 1))
        secs = [self._one(q)[0] for q in self.timing_qids[:n]]
        return {"seconds": secs}

    def time(self, msg: dict[str, Any]) -> dict[str, Any]:
        lat: dict[str, float] = {}
        totals = {"pairs": 0, "llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for q in self.timing_qids:
            s, rep = self._one(q)
            lat[q] = s
            for k in totals:
                totals[k] += int(rep.get(k, 0) or 0)
        return {"latency_s": lat, "totals": totals}

    def finish(self, msg: dict[str, Any]) -> dict[str, Any]:
        mem = self.mem.read()
        if self.rr is not None:
            self.rr.close()
        return {"memory": mem}


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = _Worker()
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            reply = getattr(worker, cmd)(msg)
            reply["ok"] = True
        except Exception as exc:  # sent to the parent, which raises it there
            from rankstack.errors import RankstackError

            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                     "config_error": isinstance(exc, RankstackError),
                     "traceback": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        if cmd == "finish" or not reply["ok"]:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
