"""``rankstack retrieve``: BM25 top-k for a dataset's queries or a topics file, as a TREC run."""

from __future__ import annotations

import argparse
import os

from rankstack.cli._common import add_config_arg


def add_parser(sub) -> None:
    p = sub.add_parser(
        "retrieve", help="retrieve top-k passages with a BM25 index into a TREC run",
        description="Search a BM25 index built by 'rankstack index'. Queries with no usable "
                    "term get an empty ranking: they are counted and reported, and have no "
                    "lines in the TREC run.")
    add_config_arg(p)
    p.add_argument("--index-dir", required=True, help="index directory from 'rankstack index'")
    p.add_argument("--queries", required=True,
                   help="dataset name (e.g. dl19: its queries), retrieve-results JSON, or a "
                        "topics file (qid<TAB>text)")
    p.add_argument("--k", type=int, default=100, help="passages per query (default 100)")
    p.add_argument("--out", required=True, help="output TREC run file (written atomically)")
    p.add_argument("--run-tag", default="bm25", help="TREC run tag (default bm25)")
    p.add_argument("--threads", type=int, default=1, help="retrieval threads (default 1)")
    p.add_argument("--batch-size", type=int, default=1024, help="queries per batch")
    p.add_argument("--no-mmap", action="store_true", help="read the index into memory")
    p.set_defaults(func=run)


def load_queries(arg: str):
    """Dataset name or ``.json`` -> ``load_dataset(arg).queries``; otherwise a topics file."""
    from rankstack.datasets import DATASETS, load_dataset
    from rankstack.errors import ConfigError
    from rankstack.io import read_topics

    if (arg in DATASETS and not os.path.exists(arg)) or arg.endswith((".json", ".json.gz")):
        queries = load_dataset(arg).queries
    else:
        queries = read_topics(arg)
    if not queries:
        raise ConfigError(f"{arg}: no queries")
    return queries


def run(args: argparse.Namespace) -> int:
    import time

    from rankstack.io import write_run
    from rankstack.retrieve import BM25Index

    queries = load_queries(args.queries)
    index = BM25Index.load(args.index_dir, mmap=not args.no_mmap)
    t0 = time.perf_counter()
    result = index.search(queries, k=args.k, n_threads=args.threads,
                          batch_size=args.batch_size, name=args.run_tag)
    dt = time.perf_counter() - t0
    write_run(result, args.out, tag=args.run_tag)
    st = index.last_search_stats
    print(f"retrieved {result.n_pairs} (query, passage) pairs for {len(result)} queries "
          f"(k={args.k}, {index.scorer}) in {dt:.2f}s -> {args.out}")
    if st.empty_rankings:
        print(f"  {st.empty_rankings} query(ies) got an empty ranking and have no lines in the "
              f"run: {len(st.empty_after_tokenizing)} with no tokens after stopwords "
              f"{st.empty_after_tokenizing[:10]}, {len(st.no_matching_term)} matching no "
              f"indexed term {st.no_matching_term[:10]}")
    if st.fewer_than_k:
        print(f"  {st.fewer_than_k} query(ies) matched fewer than k={args.k} passages")
    return 0
