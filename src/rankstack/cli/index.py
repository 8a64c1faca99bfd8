"""``rankstack index``: build a BM25 index from a JSONL corpus."""

from __future__ import annotations

import argparse
import os

from rankstack.cli._common import add_config_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="build a BM25 index (bm25s) from a JSONL corpus",
        description="Index a JSONL corpus ({id|docid|_id, text|contents, title?} per line) "
                    "with BM25 (bm25s). The index directory holds plain files and a "
                    "rankstack.json manifest.")
    add_config_arg(p)
    p.add_argument("--corpus", required=True, help="JSONL corpus (.gz allowed)")
    p.add_argument("--index-dir", required=True, help="output index directory")
    p.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    p.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    p.add_argument("--method", default="lucene",
                   help="bm25s scoring variant: lucene (default), robertson, atire, bm25l, bm25+")
    p.add_argument("--stemmer", default="english",
                   help="PyStemmer language, or 'none' (default english)")
    p.add_argument("--stopwords", default="en",
                   help="stopword list: a language code (en), 'none', or a file with one word "
                        "per line (default en)")
    p.add_argument("--backend", choices=["auto", "numba", "numpy"], default="auto",
                   help="bm25s backend (auto: numba when installed)")
    p.set_defaults(func=run)


def parse_stopwords(value: str | None) -> str | list[str] | None:
    """'none' -> None; an existing file -> its words; otherwise a bm25s language code."""
    if value is None or value.lower() in ("none", ""):
        return None
    if os.path.isfile(value):
        from rankstack.io import iter_lines

        return [w.strip() for _, w in iter_lines(value) if w.strip()]
    return value


def run(args: argparse.Namespace) -> int:
    import time

    from rankstack.io import iter_corpus
    from rankstack.retrieve import BM25Index

    t0 = time.perf_counter()
    stemmer = None if str(args.stemmer).lower() == "none" else args.stemmer
    index = BM25Index.build(iter_corpus(args.corpus), k1=args.k1, b=args.b, method=args.method,
                            stemmer=stemmer, stopwords=parse_stopwords(args.stopwords),
                            backend=args.backend, show_progress=True)
    index.save(args.index_dir)
    print(f"indexed {len(index)} passages from {args.corpus} into {args.index_dir} "
          f"({index.scorer}, stemmer={stemmer}, backend={index.backend}) "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0
