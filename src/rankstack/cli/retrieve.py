"""``rankstack retrieve``: top-k from a BM25 or dense index for a dataset's queries or a topics
file, as a TREC run. The index kind is read from its manifest."""

from __future__ import annotations

import argparse
import os

from rankstack.cli._common import add_config_arg, say

#: dense search options -> their defaults (given on a BM25 index, they are an error)
DENSE_DEFAULTS = {"mode": "exact", "hnsw_m": 32, "ef_construction": 200, "ef_search": 128,
                  "query_model": None, "query_family": None}


def add_parser(sub) -> None:
    from rankstack.cli.index import ENCODER_SETTINGS
    from rankstack.config import setting_arg

    p = sub.add_parser(
        "retrieve", help="retrieve top-k passages with a BM25 or dense index into a TREC run",
        description="Search an index built by 'rankstack index'; its kind (BM25 or dense) is "
                    "read from its rankstack.json. BM25: queries with no usable term get an "
                    "empty ranking: they are counted and reported, and have no lines in the "
                    "TREC run. Dense: queries are encoded with the index's own encoder "
                    "(model, pooling, similarity, prefixes from the manifest) unless "
                    "--query-model/--query-family say otherwise; scores are the similarity "
                    "(cosine or dot) the manifest names.")
    add_config_arg(p)
    p.add_argument("--index-dir", required=True, help="index directory from 'rankstack index'")
    p.add_argument("--queries", required=True,
                   help="dataset name (e.g. dl19: its queries), retrieve-results JSON, or a "
                        "topics file (qid<TAB>text)")
    p.add_argument("--k", type=int, default=100, help="passages per query (default 100)")
    p.add_argument("--out", required=True, help="output TREC run file (written atomically)")
    p.add_argument("--run-tag", default=None, help="TREC run tag (default bm25 or dense)")
    p.add_argument("--threads", type=int, default=1,
                   help="retrieval threads; dense: also the query encoder's (default 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="queries per batch (default 1024 for BM25, 64 for dense)")
    p.add_argument("--no-mmap", action="store_true", help="read the index into memory")
    p.add_argument("--backend", choices=["auto", "numba", "numpy"], default=None,
                   help="BM25 index: bm25s backend (default: the one the index was built with, "
                        "from its manifest; auto = numba when installed). The numba kernel is "
                        "compiled once and cached on disk, not per call")
    g = p.add_argument_group("dense index")
    g.add_argument("--dense", action="store_true",
                   help="insist on a dense index (optional: the kind comes from the manifest)")
    g.add_argument("--mode", choices=["exact", "hnsw"], default=None,
                   help="exact (default) or approximate HNSW (faiss, built when opened)")
    g.add_argument("--hnsw-m", type=int, default=None, help="HNSW neighbours per node (32)")
    g.add_argument("--ef-construction", type=int, default=None,
                   help="HNSW build beam width (200)")
    g.add_argument("--ef-search", type=int, default=None, help="HNSW search beam width (128)")
    g.add_argument("--query-model", default=None,
                   help="query encoder model (default: the model the index was built with)")
    g.add_argument("--query-family", default=None,
                   help="query encoder family (default: the index's, else bi-encoder)")
    g.add_argument("--query-setting", type=setting_arg, action="append", default=[],
                   metavar="KEY=VALUE",
                   help=f"query encoder setting (repeatable; value read as YAML): "
                        f"{', '.join(ENCODER_SETTINGS)}")
    p.set_defaults(func=run)


def load_queries(arg: str):
    """Queries of a dataset, retrieve-results JSON or topics file (:mod:`rankstack.sources`)."""
    from rankstack.sources import load_queries_arg

    return load_queries_arg(arg, "--queries")


def run(args: argparse.Namespace) -> int:
    from rankstack.errors import ConfigError, InputError
    from rankstack.retrieve.bm25 import FORMAT as BM25_FORMAT
    from rankstack.retrieve.dense import FORMAT as DENSE_FORMAT
    from rankstack.retrieve.dense import read_manifest

    if not os.path.isdir(args.index_dir):
        raise InputError("index directory does not exist", path=args.index_dir)
    if not os.path.isfile(os.path.join(args.index_dir, "rankstack.json")):
        raise InputError("no rankstack.json: not a rankstack index (BM25 or dense), or an "
                         "interrupted build", path=args.index_dir)
    manifest = read_manifest(args.index_dir)
    kind = manifest.get("format")
    if kind == DENSE_FORMAT:
        if args.backend is not None:
            raise ConfigError(f"--backend is a BM25 option, but {args.index_dir} is a dense "
                              f"index")
        return run_dense(args)
    if kind != BM25_FORMAT:
        raise InputError(f"unknown index format {kind!r} (expected {BM25_FORMAT!r} or "
                         f"{DENSE_FORMAT!r})", path=os.path.join(args.index_dir, "rankstack.json"),
                         field="format")
    if args.dense:
        raise ConfigError(f"--dense given, but {args.index_dir} is a BM25 index (format "
                          f"{kind!r}); build a dense one with 'rankstack index --dense' or drop "
                          f"--dense")
    dense_only = [k for k in DENSE_DEFAULTS if getattr(args, k) is not None]
    if args.query_setting:
        dense_only.append("query_setting")
    if dense_only:
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in dense_only)}: dense "
                          f"search options, but {args.index_dir} is a BM25 index")
    return run_bm25(args)


def run_bm25(args: argparse.Namespace) -> int:
    import time

    from rankstack.io import write_run
    from rankstack.retrieve import BM25Index

    tag = args.run_tag or "bm25"
    queries = load_queries(args.queries)
    index = BM25Index.load(args.index_dir, mmap=not args.no_mmap, backend=args.backend)
    t0 = time.perf_counter()
    result = index.search(queries, k=args.k, n_threads=args.threads,
                          batch_size=args.batch_size or 1024, name=tag)
    dt = time.perf_counter() - t0
    write_run(result, args.out, tag=tag)
    st = index.last_search_stats
    say(f"retrieved {result.n_pairs} (query, passage) pairs for {len(result)} queries "
        f"(k={args.k}, {index.scorer}, backend={index.backend}) in {dt:.2f}s -> {args.out}")
    if st.empty_rankings:
        say(f"  {st.empty_rankings} query(ies) got an empty ranking and have no lines in the "
              f"run: {len(st.empty_after_tokenizing)} with no tokens after stopwords "
              f"{st.empty_after_tokenizing[:10]}, {len(st.no_matching_term)} matching no "
              f"indexed term {st.no_matching_term[:10]}")
    if st.fewer_than_k:
        say(f"  {st.fewer_than_k} query(ies) matched fewer than k={args.k} passages")
    return 0


def dense_search_settings(args: argparse.Namespace) -> dict:
    """``mode``, ``hnsw_m``, ``ef_construction``, ``ef_search`` (defaults filled in)."""
    return {k: (DENSE_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k))
            for k in ("mode", "hnsw_m", "ef_construction", "ef_search")}


def run_dense(args: argparse.Namespace) -> int:
    import time

    from rankstack.cli.index import encoder_settings
    from rankstack.io import write_run
    from rankstack.retrieve.dense import DenseIndex, load_encoder_for_index

    tag = args.run_tag or "dense"
    queries = load_queries(args.queries)
    settings = {"threads": args.threads} | encoder_settings(args.query_setting,
                                                            "--query-setting")
    encoder = load_encoder_for_index(args.index_dir, args.query_model, args.query_family,
                                     **settings)
    index = DenseIndex.load(args.index_dir, encoder, mmap=not args.no_mmap,
                            **dense_search_settings(args))
    index.set_threads(args.threads)
    t0 = time.perf_counter()
    result = index.search(queries, k=args.k, batch_size=args.batch_size or 64, name=tag)
    dt = time.perf_counter() - t0
    write_run(result, args.out, tag=tag)
    st = index.last_search_stats
    say(f"retrieved {result.n_pairs} (query, passage) pairs for {len(result)} queries "
          f"(k={args.k}, {index.scorer}) in {dt:.2f}s -> {args.out}")
    if st.fewer_than_k:
        say(f"  {st.fewer_than_k} query(ies) got fewer than k={args.k} passages "
              f"(index has {len(index)})")
    if st.boundary_ties_rescored:
        say(f"  {st.boundary_ties_rescored} query(ies) had a score tie at the k cut and were "
              f"re-scored over all passages (tie-break: doc id)")
    return 0
