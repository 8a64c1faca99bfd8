"""``rankstack llm-rerank``: listwise or pointwise LLM re-ranking of a candidate run."""

from __future__ import annotations

import argparse
import os
import sys

from rankstack.cli._common import add_config_arg


def add_parser(sub) -> None:
    p = sub.add_parser("llm-rerank", help="re-rank candidates with an LLM (listwise or pointwise)",
                       description=__doc__)
    add_config_arg(p)
    p.add_argument("--backend", required=True, choices=["hf", "gguf", "openai"],
                   help="hf: transformers causal LM; gguf: llama-cpp-python; openai: any "
                        "OpenAI-compatible server")
    p.add_argument("--model", required=True,
                   help="hub name or local dir (hf), .gguf file (gguf), served model name (openai)")
    p.add_argument("--mode", choices=["listwise", "pointwise"], default="listwise")
    p.add_argument("--template", default=None,
                   help="built-in template (rankzephyr, rankgpt, yesno) or YAML path; default "
                        "rankzephyr (listwise) / yesno (pointwise)")
    p.add_argument("--candidates", required=True,
                   help="dataset name (dl19, ...) or retrieve-results JSON with passage text")
    p.add_argument("--run", default=None, help="TREC run replacing the dataset's candidates")
    p.add_argument("--depth", type=int, default=100, help="re-rank the top DEPTH candidates")
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--max-passage-tokens", type=int, default=None,
                   help="truncate passages to this many tokens (default 100 listwise, 256 pointwise)")
    p.add_argument("--out", required=True, help="output TREC run; the report goes next to it "
                                                "as OUT.llm.json")
    p.add_argument("--cache-dir", default=None, help="on-disk LLM call cache (resume / reruns)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (hf, gguf)")
    p.add_argument("--device", default="cpu", help="hf: torch device")
    p.add_argument("--dtype", default="float32", help="hf: float32|bfloat16|float16|auto")
    p.add_argument("--n-ctx", type=int, default=4096, help="gguf: context length")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: API root")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="openai: environment variable holding the API key (optional)")
    p.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    p.add_argument("--max-concurrency", type=int, default=4, help="openai: parallel requests")
    p.add_argument("--timeout", type=float, default=120.0, help="openai: seconds per request")
    p.add_argument("--max-retries", type=int, default=5, help="openai: retries on 429/5xx")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def backend_options(args: argparse.Namespace) -> dict:
    if args.backend == "hf":
        return {"device": args.device, "dtype": args.dtype, "threads": args.threads}
    if args.backend == "gguf":
        return {"n_ctx": args.n_ctx, "threads": args.threads}
    return {"base_url": args.base_url, "api_key": os.environ.get(args.api_key_env or ""),
            "endpoint": args.endpoint, "max_concurrency": args.max_concurrency,
            "timeout": args.timeout, "max_retries": args.max_retries}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError
    from rankstack.io import write_run
    from rankstack.llm import (
        ListwiseLLMReranker,
        LLMCache,
        PointwiseLLMReranker,
        load_backend,
    )

    ds = load_dataset(args.candidates, run=args.run)
    if ds.run is None:
        raise ConfigError(f"dataset {args.candidates!r} has no candidate run; give --run")
    backend = load_backend(args.backend, args.model, **backend_options(args))
    cache = LLMCache(args.cache_dir) if args.cache_dir else None
    try:
        if args.mode == "listwise":
            rr = ListwiseLLMReranker(
                backend, args.template or "rankzephyr", window=args.window, stride=args.stride,
                passes=args.passes, max_passage_tokens=args.max_passage_tokens or 100, cache=cache)
        else:
            rr = PointwiseLLMReranker(backend, args.template or "yesno",
                                      max_passage_tokens=args.max_passage_tokens or 256,
                                      cache=cache)
        out, report = rr.rerank(ds.run, ds.queries, ds.docs, depth=args.depth,
                                max_queries=args.max_queries, progress=not args.no_progress)
    finally:
        backend.close()
        if cache is not None:
            cache.close()
    write_run(out, args.out)
    if ds.qrels is not None:
        report.notes["nDCG@10"] = _ndcg10(ds, out)
    report.save(f"{args.out}.llm.json")
    report.print_table(Console(stderr=True))
    print(f"wrote {args.out} ({len(out)} queries) and {args.out}.llm.json", file=sys.stderr)
    return 0


def _ndcg10(ds, out) -> dict[str, float]:
    """nDCG@10 of the first stage and of the LLM run on the re-ranked queries (for the report)."""
    import ir_measures
    from ir_measures import nDCG

    qrels = {q: ds.qrels[q] for q in out if q in ds.qrels}
    if not qrels:
        return {}
    before = {q: ds.run[q].scores() for q in qrels}
    after = {q: out[q].scores() for q in qrels}
    m = nDCG @ 10
    return {"first_stage": round(ir_measures.calc_aggregate([m], qrels, before)[m], 4),
            "llm": round(ir_measures.calc_aggregate([m], qrels, after)[m], 4),
            "queries": len(qrels)}
