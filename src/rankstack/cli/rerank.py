"""``rankstack rerank``: re-rank a candidate run with a cross-encoder, bi-encoder or other family."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rankstack.cli._common import add_config_arg


def _setting(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), yaml.safe_load(value)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rerank", help="re-rank a candidate run with a neural model into a TREC run",
        description="Scores the top --depth candidates of each query and re-sorts them; "
                    "candidates below depth follow in their original order. With no --model, "
                    "the bundled all-MiniLM-L6-v2 bi-encoder is used (offline). The family is "
                    "never guessed: give --family unless the model's config.json records "
                    "rankstack_family. Finished queries go to OUT.journal.jsonl as they are "
                    "done: re-running an interrupted command resumes from it.")
    add_config_arg(p)
    p.add_argument("--model", default=None, help="hub id or local directory (default: bundled "
                                                  "MiniLM bi-encoder)")
    p.add_argument("--family", default=None,
                   help="scorer family, e.g. cross-encoder, bi-encoder, monot5 (registry)")
    p.add_argument("--candidates", default=None,
                   help="dataset name (dl19, dl20, ...) or retrieve-results JSON with passages")
    p.add_argument("--run", default=None, help="TREC run to re-rank (replaces the candidates' "
                                               "run; passages from --candidates or --corpus)")
    p.add_argument("--topics", default=None, help="topics file (qid<TAB>text)")
    p.add_argument("--corpus", default=None, help="JSONL corpus with the passage texts")
    p.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query")
    p.add_argument("--out", required=True, help="output TREC run (written atomically)")
    p.add_argument("--run-tag", default=None, help="TREC run tag (default: derived)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per model batch")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (scorer default 1)")
    p.add_argument("--workers", type=int, default=None,
                   help="score with N worker processes (each with --threads threads, default "
                        "1); on small CPUs faster than more threads")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "bf16-mixed"], default=None,
                   help="auto = bf16 where the CPU has AMX/AVX512-BF16, else fp32; bf16-mixed = "
                        "fp32 weights + bf16 autocast (closer to fp32, a little slower)")
    p.add_argument("--backend", choices=["torch", "onnx"], default=None,
                   help="encoder families: torch (default) or ONNX Runtime (fp32, cached export)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="ONNX dynamic int8 (changes rankings; see benchmarks/rerank_throughput.py)")
    p.add_argument("--query-length", type=int, default=None, help="query token budget")
    p.add_argument("--doc-length", type=int, default=None, help="passage token budget")
    p.add_argument("--max-length", type=int, default=None, help="cap on the whole input")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--on-missing", choices=["raise", "skip"], default="raise",
                   help="doc/query ids without text: error (default) or skip and count")
    p.add_argument("--setting", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="other scorer setting (repeatable), e.g. pooling=mean")
    p.add_argument("--stats", default=None, help="write the re-ranking stats as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from rankstack.errors import ConfigError

    out: dict[str, Any] = {}
    items = args.setting
    if isinstance(items, dict):  # from YAML: setting: {pooling: mean}
        items = list(items.items())
    for item in items or []:
        if isinstance(item, str):
            try:
                item = _setting(item)
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(str(exc)) from None
        k, v = item
        out[k] = v
    for key in ("batch_size", "threads", "workers", "dtype", "backend", "quantize", "query_length",
                "doc_length", "max_length", "device"):
        v = getattr(args, key)
        if v is not None:  # only what was asked: other families take other settings
            out[key] = v
    return out


def run(args: argparse.Namespace) -> int:
    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError
    from rankstack.io import atomic_write, write_run
    from rankstack.rerank.reranker import Reranker

    if not args.candidates and not args.run:
        raise ConfigError("give --candidates (dataset or retrieve-results JSON) or --run")
    ds = load_dataset(args.candidates or "files", run=args.run, topics=args.topics,
                      corpus=args.corpus)
    if ds.run is None:
        raise ConfigError(f"{args.candidates}: no candidate run (give --run)")
    if not ds.docs:
        raise ConfigError("no passage texts: give --candidates with passages or --corpus")
    reranker = Reranker.from_pretrained(args.model, args.family, depth=args.depth,
                                        on_missing=args.on_missing,
                                        show_progress=not args.no_progress, **_settings(args))
    journal = Path(str(args.out) + ".journal.jsonl")
    if journal.exists():
        print(f"resuming from {journal}")
    try:
        result, stats = reranker.rerank_with_stats(ds.run, ds.queries, ds.docs, journal=journal)
    finally:
        reranker.close()
    write_run(result, args.out, tag=args.run_tag)
    journal.unlink(missing_ok=True)
    if args.stats:
        with atomic_write(args.stats) as fh:
            json.dump(stats.to_dict(), fh, indent=2)
    print(stats.summary())
    print(f"scores: {stats.score_kind} from {stats.model} -> {args.out}")
    return 0
