"""Load test of ``rankstack serve``: micro-batching vs one request per model call, and the
server against offline re-ranking with the same scorer settings.

Starts one server per server mode on loopback (each in its own process, same model and
settings except batching): ``batched`` (micro-batching: ``max_batch_pairs``, ``max_wait_ms``)
and ``single`` (batches of a single request); and ``pool``: micro-batching over ``--workers``
independent one-process copies of the scorer, one batch in flight per copy (batched with
``--workers N`` instead splits every batch across N processes). Then, in interleaved phases (batched, single,
batched, single, ...), C concurrent clients (default 16) send ``POST /rerank`` requests for
``duration`` seconds each: a DL19 query with its top-P BM25 passages (default 10). Reports per
phase and as medians over repeats: requests/s, pairs/s, p50/p99 latency, errors; and the
throughput ratio batched / single.

Mode ``offline`` (``--modes batched offline``) interleaves, in this process, offline
re-ranking (``Reranker.rerank``, what ``rankstack rerank`` runs, on runs of 8 queries) of the same DL19 queries x P passages with a scorer of the same settings
(``--dtype``, ``--workers``, ``--threads``), cycling over the queries for ``duration``
seconds: pairs/s; the server overhead is then
``1 - server pairs/s / offline pairs/s``. The clients run in this process too, on the same
CPU as the server: on a small machine part of the "overhead" is the clients' own work.

    python benchmarks/serve_load.py --duration 60 --clients 16 --repeats 3
    python benchmarks/serve_load.py --modes batched offline --dtype bf16 --workers 2 \
        --duration 60 --clients 16 --repeats 3

Loopback only (the servers bind 127.0.0.1; the clients only talk to them). Durations are
bounded to 600 s per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_DURATION = 600.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scorer_settings(args: argparse.Namespace) -> dict:
    out: dict = {"threads": args.threads} if args.threads else {}
    if args.dtype:
        out["dtype"] = args.dtype
    if args.workers and args.workers > 1:
        out["workers"] = args.workers
    return out


def server_main(args: argparse.Namespace) -> None:
    """Child process: one server until killed."""
    import torch

    torch.set_num_threads(args.threads)
    from rankstack.rerank.reranker import Reranker
    from rankstack.serve.app import ServiceSettings, create_app
    from rankstack.serve.server import serve_forever

    if args.server == "pool":
        # N independent one-process scorers, one per batcher worker: N batches in flight
        from rankstack.rerank.defaults import default_model
        from rankstack.rerank.parallel import ParallelScorer

        model, family, settings = args.model, args.family, _scorer_settings(args)
        settings.pop("workers", None)
        if model is None:
            model, family, defaults = default_model()
            settings = {**defaults, **settings}
        if family is None:
            raise SystemExit("--server pool needs --family with --model")
        pool = [ParallelScorer(family, model, workers=1, settings=settings)
                for _ in range(max(1, args.workers))]
        s = ServiceSettings(max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms)
        app = create_app(pool[0], settings=s, score_fn=[sc.score_pairs for sc in pool])
        serve_forever(app, "127.0.0.1", args.port, log_level="warning")
        return
    reranker = Reranker.from_pretrained(model=args.model, family=args.family,
                                        **_scorer_settings(args))
    s = ServiceSettings(max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms,
                        max_batch_requests=1 if args.server == "single" else None)
    app = create_app(reranker.scorer, settings=s)
    serve_forever(app, "127.0.0.1", args.port, log_level="warning")


def _payloads(n_passages: int) -> list[dict]:
    from rankstack.datasets import load_dataset

    ds = load_dataset("dl19")
    assert ds.run is not None
    out = []
    for qid, ranking in ds.run.items():
        out.append({"query": ds.queries[qid].text,
                    "passages": [ds.docs[d].full_text for d in ranking.doc_ids[:n_passages]]})
    return out


class Offline:
    """Offline re-ranking of the same pairs the clients send, with the server's settings."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from rankstack.datasets import load_dataset
        from rankstack.rerank.reranker import Reranker

        torch.set_num_threads(args.threads)
        ds = load_dataset("dl19")
        assert ds.run is not None
        self.run = ds.run.top(args.passages)
        self.queries, self.docs = ds.queries, ds.docs
        self.reranker = Reranker.from_pretrained(model=args.model, family=args.family,
                                                 show_progress=False, **_scorer_settings(args))

    def phase(self, duration: float) -> dict:
        """Re-rank runs of ``chunk`` queries, cycling over the queries, for ``duration`` s
        (``rerank`` groups queries up to ``chunk_pairs`` pairs per model call, so with 10 or
        100 passages per query each run is one call of 80 or 800 pairs)."""
        from rankstack.records import Run

        qids = list(self.run)
        chunk = 8
        pairs = n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration:
            part = [qids[(n + i) % len(qids)] for i in range(chunk)]
            sub = Run({q: self.run[q] for q in dict.fromkeys(part)}, self.run.name)
            pairs += self.reranker.rerank(sub, self.queries, self.docs).n_pairs
            n += len(sub)
        wall = time.perf_counter() - t0
        return {"requests": n, "rps": n / wall,
                "pairs_per_s": pairs / wall, "p50_ms": float("nan"), "p99_ms": float("nan"),
                "errors": 0, "wall_s": wall, "requests_per_batch": float("nan")}

    def close(self) -> None:
        self.reranker.close()


async def _phase(url: str, payloads: list[dict], clients: int, duration: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def client(i: int, c: httpx.AsyncClient) -> None:
        nonlocal errors
        n = i
        while time.perf_counter() < stop_at:
            body = payloads[n % len(payloads)]
            n += clients
            t0 = time.perf_counter()
            try:
                r = await c.post("/rerank", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        before = (await c.get("/stats")).json()["batching"]
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, c) for i in range(clients)))
        wall = time.perf_counter() - t0
        after = (await c.get("/stats")).json()["batching"]
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] * 1000 if lat else float("nan")

    batches = after["batches"] - before["batches"]
    reqs = after["requests"] - before["requests"]
    n_pairs = len(payloads[0]["passages"])
    return {"requests": len(lat), "rps": len(lat) / wall,
            "pairs_per_s": len(lat) * n_pairs / wall, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "errors": errors, "wall_s": wall,
            "requests_per_batch": reqs / batches if batches else float("nan")}


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server {url} did not come up in {timeout} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds per phase (<= 600)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1, help="interleaved phases per mode")
    p.add_argument("--passages", type=int, default=10, help="passages per request")
    p.add_argument("--model", default=None, help="default: the bundled MiniLM bi-encoder")
    p.add_argument("--family", default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of each server (per worker with --workers)")
    p.add_argument("--dtype", default=None, help="scorer dtype (auto, fp32, bf16, bf16-mixed)")
    p.add_argument("--workers", type=int, default=1,
                   help="scorer worker processes (rankstack.rerank.parallel)")
    p.add_argument("--modes", nargs="+", choices=["batched", "single", "pool", "offline"],
                   default=["batched", "single"], help="what to compare, interleaved")
    p.add_argument("--max-batch-pairs", type=int, default=256)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--server", choices=["batched", "single", "pool"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server:
        server_main(args)
        return 0
    if not 0 < args.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    if not 1 <= args.clients <= 256:
        p.error("--clients must be in [1, 256]")

    import httpx

    payloads = _payloads(args.passages)
    # every payload has the same number of passages (DL19 runs have 100 per query)
    assert len({len(p["passages"]) for p in payloads}) == 1
    procs: dict[str, tuple[str, subprocess.Popen]] = {}
    offline: Offline | None = None
    modes = list(dict.fromkeys(args.modes))
    used_ports: set[int] = set()
    try:
        for mode in modes:
            if mode == "offline":
                continue
            port = _free_port()
            while port in used_ports:  # a port just released can be handed out again
                port = _free_port()
            used_ports.add(port)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--server", mode,
                   "--port", str(port), "--threads", str(args.threads),
                   "--workers", str(args.workers),
                   "--max-batch-pairs", str(args.max_batch_pairs),
                   "--max-wait-ms", str(args.max_wait_ms)]
            for flag, value in (("--model", args.model), ("--family", args.family),
                                ("--dtype", args.dtype)):
                if value:
                    cmd += [flag, value]
            procs[mode] = (f"http://127.0.0.1:{port}", subprocess.Popen(cmd))
        for url, proc in procs.values():
            _wait_up(url, proc)
        for mode, (url, proc) in procs.items():
            # the server that answers must be this mode's (not another process on the port)
            got = httpx.get(url + "/stats", timeout=30).json()["settings"]["max_batch_requests"]
            if proc.poll() is not None or got != (1 if mode == "single" else None):
                raise RuntimeError(f"{url} is not the {mode} server (another process holds "
                                   f"the port?); run again")
        if "offline" in modes:
            offline = Offline(args)
            offline.phase(args.warmup)
        for url, _ in procs.values():
            asyncio.run(_phase(url, payloads, args.clients, args.warmup))
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for rep in range(args.repeats):
            for mode in modes:
                if mode == "offline":
                    assert offline is not None
                    r = offline.phase(args.duration)
                else:
                    r = asyncio.run(_phase(procs[mode][0], payloads, args.clients,
                                           args.duration))
                results[mode].append(r)
                print(f"[{rep + 1}/{args.repeats}] {mode:8s} {r['rps']:7.2f} req/s  "
                      f"{r['pairs_per_s']:7.1f} pairs/s  p50 {r['p50_ms']:7.1f} ms  "
                      f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  "
                      f"requests/batch {r['requests_per_batch']:.1f}", flush=True)
    finally:
        if offline is not None:
            offline.close()
        for _, proc in procs.values():
            proc.terminate()
        for _, proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    med = {m: {k: statistics.median(r[k] for r in rs) for k in
               ("rps", "pairs_per_s", "p50_ms", "p99_ms", "requests_per_batch")} | {
               "errors": sum(r["errors"] for r in rs)} for m, rs in results.items()}
    scorer = (f"dtype {args.dtype or 'default'}, {args.workers} worker(s) x {args.threads} "
              f"torch thread(s)")
    print(f"\n{args.clients} clients x {args.duration:g} s x {args.repeats} repeat(s), "
          f"{args.passages} passages/request, model {args.model or 'bundled MiniLM'}, {scorer}")
    print(f"{'mode':8s} {'req/s':>8s} {'pairs/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'errors':>7s} {'req/batch':>9s}")
    for m, v in med.items():
        print(f"{m:8s} {v['rps']:8.2f} {v['pairs_per_s']:8.1f} {v['p50_ms']:8.1f} "
              f"{v['p99_ms']:8.1f} {v['errors']:7d} {v['requests_per_batch']:9.1f}")
    summary: dict[str, float] = {}
    if "batched" in med and "single" in med and med["single"]["rps"]:
        summary["ratio_batched_single"] = med["batched"]["rps"] / med["single"]["rps"]
        print(f"throughput ratio batched/single: {summary['ratio_batched_single']:.2f}x")
    for mode in ("batched", "pool"):
        if "offline" not in med or mode not in med or not med["offline"]["pairs_per_s"]:
            continue
        ratio = med[mode]["pairs_per_s"] / med["offline"]["pairs_per_s"]
        # per repeat too: the phases of one repeat ran next to each other
        per = [b["pairs_per_s"] / o["pairs_per_s"]
               for b, o in zip(results[mode], results["offline"], strict=True)]
        summary[f"{mode}_over_offline"] = ratio
        summary[f"{mode}_overhead"] = 1 - ratio
        print(f"server ({mode}) pairs/s / offline pairs/s: {ratio:.3f} (per repeat "
              f"{', '.join(f'{x:.3f}' for x in per)}); server overhead {1 - ratio:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results,
                                               "median": med, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
