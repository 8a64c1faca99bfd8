"""Load test of ``rankstack serve``: micro-batching vs one request per model call.

Starts two servers on loopback (each in its own process, same model and settings except
batching): one with micro-batching (``max_batch_pairs``, ``max_wait_ms``), one with batches of
a single request. Then, in interleaved phases (batched, single, batched, single, ...), C
concurrent clients (default 16) send ``POST /rerank`` requests for ``duration`` seconds each:
a DL19 query with its top-P BM25 passages (default 10). Reports per phase and as medians over
repeats: requests/s, p50/p99 latency, errors; and the throughput ratio batched / single.

    python benchmarks/serve_load.py --duration 60 --clients 16 --repeats 3

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


def server_main(args: argparse.Namespace) -> None:
    """Child process: one server until killed."""
    import torch

    torch.set_num_threads(args.threads)
    from rankstack.rerank.reranker import Reranker
    from rankstack.serve.app import ServiceSettings, create_app
    from rankstack.serve.server import serve_forever

    settings = {"threads": args.threads} if args.threads else {}
    reranker = Reranker.from_pretrained(model=args.model, family=args.family, **settings)
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
    return {"requests": len(lat), "rps": len(lat) / wall, "p50_ms": pct(0.50),
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
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    p.add_argument("--max-batch-pairs", type=int, default=256)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--server", choices=["batched", "single"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server:
        server_main(args)
        return 0
    if not 0 < args.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    if not 1 <= args.clients <= 256:
        p.error("--clients must be in [1, 256]")

    payloads = _payloads(args.passages)
    procs: dict[str, tuple[str, subprocess.Popen]] = {}
    try:
        for mode in ("batched", "single"):
            port = _free_port()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--server", mode,
                   "--port", str(port), "--threads", str(args.threads),
                   "--max-batch-pairs", str(args.max_batch_pairs),
                   "--max-wait-ms", str(args.max_wait_ms)]
            if args.model:
                cmd += ["--model", args.model]
            if args.family:
                cmd += ["--family", args.family]
            procs[mode] = (f"http://127.0.0.1:{port}", subprocess.Popen(cmd))
        for url, proc in procs.values():
            _wait_up(url, proc)
        for url, _ in procs.values():
            asyncio.run(_phase(url, payloads, args.clients, args.warmup))
        results: dict[str, list[dict]] = {"batched": [], "single": []}
        for rep in range(args.repeats):
            for mode in ("batched", "single"):
                r = asyncio.run(_phase(procs[mode][0], payloads, args.clients, args.duration))
                results[mode].append(r)
                print(f"[{rep + 1}/{args.repeats}] {mode:8s} {r['rps']:7.2f} req/s  "
                      f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"errors {r['errors']}  requests/batch {r['requests_per_batch']:.1f}",
                      flush=True)
    finally:
        for _, proc in procs.values():
            proc.terminate()
        for _, proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    med = {m: {k: statistics.median(r[k] for r in rs) for k in
               ("rps", "p50_ms", "p99_ms", "requests_per_batch")} | {
               "errors": sum(r["errors"] for r in rs)} for m, rs in results.items()}
    print(f"\n{args.clients} clients x {args.duration:g} s x {args.repeats} repeat(s), "
          f"{args.passages} passages/request, model {args.model or 'bundled MiniLM'}, "
          f"{args.threads} torch thread(s)")
    print(f"{'mode':8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} "
          f"{'req/batch':>9s}")
    for m, v in med.items():
        print(f"{m:8s} {v['rps']:8.2f} {v['p50_ms']:8.1f} {v['p99_ms']:8.1f} {v['errors']:7d} "
              f"{v['requests_per_batch']:9.1f}")
    ratio = med["batched"]["rps"] / med["single"]["rps"] if med["single"]["rps"] else float("nan")
    print(f"throughput ratio batched/single: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results,
                                               "median": med, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
