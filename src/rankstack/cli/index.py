"""``rankstack index``: build a BM25 index (default) or, with ``--dense``, a dense index."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rankstack.cli._common import add_config_arg, say
from rankstack.config import setting_arg

#: BM25 options and their defaults (with --dense, setting any of them is an error)
BM25_DEFAULTS: dict[str, Any] = {"k1": 0.9, "b": 0.4, "method": "lucene", "stemmer": "english",
                                 "stopwords": "en", "backend": "auto"}
#: what ``--setting KEY=VALUE`` may set on the bi-encoder (first five are in the manifest)
ENCODER_SETTINGS = ("pooling", "similarity", "query_prefix", "passage_prefix", "append_eos",
                    "threads", "dtype", "batch_size")
DEFAULT_ENCODE_BATCH = 256


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="build a BM25 (bm25s) or, with --dense, a dense index from a corpus",
        description="Index a JSONL corpus ({id|docid|_id, text|contents, title?} per line; "
                    "or .tsv: docid<TAB>text or docid<TAB>title<TAB>text), a dataset's or a "
                    "retrieve-results JSON's passages, "
                    "with BM25 (bm25s), or with --dense encode it with a bi-encoder (default: "
                    "the bundled all-MiniLM-L6-v2, offline). The index directory holds plain "
                    "files and a rankstack.json manifest; 'rankstack retrieve' reads its kind "
                    "from there. Dense builds resume after an interruption.")
    add_config_arg(p)
    p.add_argument("--corpus", required=True,
                   help="JSONL or TSV corpus (.gz allowed), a dataset name or a "
                        "retrieve-results JSON (indexes the passages it ships)")
    p.add_argument("--index-dir", required=True, help="output index directory")
    p.add_argument("--k1", type=float, default=BM25_DEFAULTS["k1"], help="BM25 k1 (default 0.9)")
    p.add_argument("--b", type=float, default=BM25_DEFAULTS["b"], help="BM25 b (default 0.4)")
    p.add_argument("--method", default=BM25_DEFAULTS["method"],
                   help="bm25s scoring variant: lucene (default), robertson, atire, bm25l, bm25+")
    p.add_argument("--stemmer", default=BM25_DEFAULTS["stemmer"],
                   help="PyStemmer language, or 'none' (default english)")
    p.add_argument("--stopwords", default=BM25_DEFAULTS["stopwords"],
                   help="stopword list: a language code (en), 'none', or a file with one word "
                        "per line (default en)")
    p.add_argument("--backend", choices=["auto", "numba", "numpy"],
                   default=BM25_DEFAULTS["backend"],
                   help="bm25s backend (auto: numba when installed)")
    g = p.add_argument_group("dense index (--dense)")
    g.add_argument("--dense", action="store_true",
                   help="build a dense index with a bi-encoder instead of BM25")
    g.add_argument("--model", default=None,
                   help="bi-encoder: hub id or local directory (default: bundled MiniLM)")
    g.add_argument("--family", default=None,
                   help="scorer family from the registry (default bi-encoder)")
    g.add_argument("--setting", type=setting_arg, action="append", default=[],
                   metavar="KEY=VALUE",
                   help=f"encoder setting (repeatable; value read as YAML): "
                        f"{', '.join(ENCODER_SETTINGS)}")
    g.add_argument("--encode-batch-size", type=int, default=None,
                   help=f"passages encoded and written per resumable step "
                        f"(default {DEFAULT_ENCODE_BATCH})")
    p.set_defaults(func=run)


def encoder_settings(items: Any, option: str = "--setting") -> dict[str, Any]:
    """Encoder settings from ``--setting`` (or YAML: a mapping or a list of KEY=VALUE)."""
    from rankstack.config import parse_settings

    return parse_settings(items, option, allowed=ENCODER_SETTINGS, what="encoder")


def parse_stopwords(value: str | None) -> str | list[str] | None:
    """'none' -> None; an existing file -> its words; otherwise a bm25s language code."""
    if value is None or value.lower() in ("none", ""):
        return None
    if os.path.isfile(value):
        from rankstack.io import iter_lines

        return [w.strip() for _, w in iter_lines(value) if w.strip()]
    return value


def load_docs(arg: str):
    """The passages to index: a dataset's (or retrieve-results JSON's) ``docs``, or the
    documents of a JSONL/TSV corpus (see :mod:`rankstack.sources` for the precedence)."""
    from rankstack.sources import load_docs_arg

    return list(load_docs_arg(arg, "--corpus").values())


def run(args: argparse.Namespace) -> int:
    from rankstack.errors import ConfigError

    if args.dense:
        changed = [k for k, v in BM25_DEFAULTS.items() if getattr(args, k) != v]
        if changed:
            raise ConfigError(f"--{', --'.join(changed)}: BM25 options, not used by --dense")
        return run_dense(args)
    dense_only = [name for name, v in (("model", args.model), ("family", args.family),
                                       ("setting", args.setting),
                                       ("encode-batch-size", args.encode_batch_size)) if v]
    if dense_only:
        raise ConfigError(f"--{', --'.join(dense_only)}: dense index options; add --dense")
    return run_bm25(args)


def run_bm25(args: argparse.Namespace) -> int:
    import time

    from rankstack.retrieve import BM25Index

    t0 = time.perf_counter()
    stemmer = None if str(args.stemmer).lower() == "none" else args.stemmer
    index = BM25Index.build(load_docs(args.corpus), k1=args.k1, b=args.b, method=args.method,
                            stemmer=stemmer, stopwords=parse_stopwords(args.stopwords),
                            backend=args.backend, show_progress=True)
    index.save(args.index_dir)
    say(f"indexed {len(index)} passages from {args.corpus} into {args.index_dir} "
          f"({index.scorer}, stemmer={stemmer}, backend={index.backend}) "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


def run_dense(args: argparse.Namespace) -> int:
    import time

    from rankstack.retrieve.dense import build_dense_index, load_encoder, read_manifest

    settings = encoder_settings(args.setting)
    batch = args.encode_batch_size or DEFAULT_ENCODE_BATCH
    t0 = time.perf_counter()
    docs = load_docs(args.corpus)
    encoder = load_encoder(args.model, args.family, **settings)
    build_dense_index(docs, encoder, args.index_dir, batch_size=batch, show_progress=True)
    m = read_manifest(args.index_dir)
    say(f"indexed {m['n_docs']} passages from {args.corpus} into {args.index_dir} "
          f"(dense: {m.get('model')}, pooling={m.get('pooling')}, {m.get('similarity')}, "
          f"dim={m['dim']}) in {time.perf_counter() - t0:.1f}s")
    return 0
