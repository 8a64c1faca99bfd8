"""Listwise LLM re-ranking: batched windows vs one window at a time, same model, same process.

The HF backend's ``batch_size`` decides the path: 1 = every window is its own ``generate``
call (the one-at-a-time path), B > 1 = the queries of a group slide their windows in lockstep
and each step's windows go through one left-padded ``generate`` call of up to B prompts
(:meth:`rankstack.llm.sliding_window.SlidingWindowReranker.rerank_many`). The same loaded
model serves both; the methods alternate over ``--repeats`` rounds (medians), no call cache.
Greedy decoding, so the permutations must be identical: the script checks every query's
order against the one-at-a-time run and exits 1 if any differs.

SmolLM2-135M-Instruct as HF weights (de-quantized from the bundled GGUF)::

    python benchmarks/gguf_to_hf.py runs/smollm2-hf
    python benchmarks/llm_listwise_batching.py --model runs/smollm2-hf --queries 10 --depth 5 \
        --window 5 --stride 5 --max-passage-tokens 20 --batch-size 10 --repeats 1

(``--depth 20 --window 10 --stride 5`` gives several windows per query, each step batched.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF causal LM directory (see above)")
    ap.add_argument("--queries", type=int, default=10, help="first N DL19 queries")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--max-passage-tokens", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=10, help="prompts per batched generate")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from rankstack.datasets import load_dataset
    from rankstack.llm.hf import HFBackend
    from rankstack.llm.listwise import ListwiseLLMReranker
    from rankstack.records import Run

    torch.set_num_threads(args.threads)
    ds = load_dataset("dl19")
    assert ds.run is not None
    qids = list(ds.run)[: args.queries]
    run = Run({q: ds.run[q] for q in qids}, name=ds.run.name)
    backend = HFBackend(args.model, dtype=args.dtype, threads=args.threads)
    rr = ListwiseLLMReranker(backend, window=args.window, stride=args.stride,
                             max_passage_tokens=args.max_passage_tokens, depth=args.depth,
                             show_progress=False)
    methods = {"one at a time (batch_size 1)": 1, f"batched (batch_size {args.batch_size})":
               args.batch_size}
    console = Console(width=140)
    console.print(f"{len(qids)} DL19 queries, depth {args.depth}, window {args.window}, stride "
                  f"{args.stride}, {args.max_passage_tokens} tokens per passage, model "
                  f"{args.model} ({args.dtype}, {args.threads} thread(s))")
    times: dict[str, list[float]] = {m: [] for m in methods}
    orders: dict[str, dict[str, list[str]]] = {}
    usage: dict[str, object] = {}
    for r in range(args.repeats):
        for m, bs in methods.items():
            backend.batch_size = bs
            t0 = time.perf_counter()
            out = rr.rerank(run, ds.queries, ds.docs)
            times[m].append(time.perf_counter() - t0)
            got = {q: out[q].doc_ids for q in out}
            if m in orders and orders[m] != got:
                console.print(f"[red]{m}: round {r + 1} differs from round 1[/red]")
            orders.setdefault(m, got)
            usage[m] = rr.last_report.total
            console.print(f"round {r + 1}/{args.repeats}: {m}: {times[m][-1]:.1f}s")
    ref_name = next(iter(methods))
    ref = orders[ref_name]
    base = statistics.median(times[ref_name])
    table = Table(title=f"listwise re-ranking, {len(qids)} queries, median of {args.repeats}")
    for col in ("method", "median s", "windows", "windows/s", "speed-up", "prompt tok",
                "gen tok", "identical permutations"):
        table.add_column(col, justify="left" if col == "method" else "right")
    all_same = True
    for m in methods:
        med = statistics.median(times[m])
        u = usage[m]
        same = sum(orders[m][q] == ref[q] for q in ref)
        all_same &= same == len(ref)
        table.add_row(m, f"{med:.1f}", str(u.calls), f"{u.calls / med:.2f}",
                      f"{base / med:.2f}x", str(u.prompt_tokens), str(u.completion_tokens),
                      f"{same}/{len(ref)}")
    console.print(table)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
