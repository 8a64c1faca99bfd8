"""BM25 speed and agreement: rankstack's BM25Index vs raw bm25s (numba, numpy) vs rank_bm25.

Same corpus, same queries, same tokenization (bm25s's: lower-case, ``\\w\\w+``, English
stopwords, English Snowball stemmer), k1=0.9, b=0.4, top-100, one thread, in one process.
Implementations are run interleaved (A B C D, A B C D, ...) ``--repeats`` times and the
median is reported. Index time includes tokenizing the corpus; search time includes
tokenizing the queries and producing the top-k (rankstack: the Run of array-backed Rankings
and each query's list of doc ids). numba's one-off JIT compilation is done in an untimed
warm-up and reported separately ("first call s"; rankstack's kernel is loaded from numba's
on-disk cache after its first compilation, bm25s's is compiled in every process).

rank_bm25 (BM25Okapi) scores every document in Python per query term, so it is timed on the
first ``--rank-bm25-queries`` queries only (the table says so). Its idf is Robertson's with an
epsilon floor, not Lucene's, so its top-10 differs a little from the others by design.

Corpus: the union of the passages in the candidate lists of ``--datasets`` (default
dl19 dl20 dl21 dl22, ~22k passages). Queries: dl19 + dl20 (97).

    python benchmarks/bm25_bench.py --repeats 5
    python benchmarks/bm25_bench.py --datasets dl19 --repeats 2 --rank-bm25-queries 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

K1, B, K = 0.9, 0.4, 100


def load(datasets: list[str], query_sets: list[str]):
    from rankstack.cli.corpus import collect_docs
    from rankstack.datasets import load_dataset

    docs, _ = collect_docs(datasets, show_progress=False)
    queries = {}
    for name in query_sets:
        for q in load_dataset(name).queries.values():
            if q.id in queries:
                raise SystemExit(f"query id {q.id} appears in two query sets")
            queries[q.id] = q
    return list(docs.values()), list(queries.values())


def tokenizer():
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english")

    def tok(texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords="en", stemmer=stem, return_ids=False,
                              show_progress=False)

    return tok, stem


class Impl:
    """One implementation: ``index()`` builds from raw texts, ``search(texts)`` -> top ids."""

    name: str
    doc_ids: list[str]

    def index(self) -> None: ...

    def search(self, texts: list[str]) -> list[list[str]]: ...


class Rankstack(Impl):
    def __init__(self, docs, queries):
        self.name, self.docs, self.queries = "rankstack BM25Index", docs, queries

    def index(self):
        from rankstack.retrieve import BM25Index

        self.idx = BM25Index.build(self.docs, k1=K1, b=B, show_progress=False)

    def search(self, queries):
        run = self.idx.search(queries, k=K, n_threads=1, show_progress=False)
        return [run[q.id].doc_ids for q in queries]


class RawBM25S(Impl):
    def __init__(self, docs, backend: str):
        self.name, self.backend = f"bm25s ({backend})", backend
        self.doc_ids = [d.id for d in docs]
        self.texts = [d.full_text for d in docs]

    def index(self):
        import bm25s

        _, stem = tokenizer()
        corpus_tokens = bm25s.tokenize(self.texts, stopwords="en", stemmer=stem,
                                       show_progress=False)
        self.r = bm25s.BM25(k1=K1, b=B, method="lucene", backend=self.backend)
        self.r.index(corpus_tokens, show_progress=False)

    def search(self, queries):
        tok, _ = tokenizer()
        qt = tok([q.text for q in queries])
        res = self.r.retrieve(qt, k=K, n_threads=1, show_progress=False)
        ids = np.asarray(self.doc_ids)
        return [list(ids[row[s > 0]]) for row, s in zip(res.documents, res.scores, strict=True)]


class RankBM25(Impl):
    def __init__(self, docs):
        self.name = "rank_bm25 (BM25Okapi)"
        self.doc_ids = [d.id for d in docs]
        self.texts = [d.full_text for d in docs]

    def index(self):
        from rank_bm25 import BM25Okapi

        tok, _ = tokenizer()
        self.r = BM25Okapi(tok(self.texts), k1=K1, b=B)

    def search(self, queries):
        tok, _ = tokenizer()
        out = []
        for toks in tok([q.text for q in queries]):
            s = self.r.get_scores(toks)
            top = np.argsort(-s, kind="stable")[:K]
            out.append([self.doc_ids[i] for i in top if s[i] > 0])
        return out


def identical_under_rule(raw: RawBM25S, queries, got: list[list[str]]) -> int:
    """Queries whose top-K equals raw bm25s's full-index scores sorted by the rankstack rule."""
    tok, _ = tokenizer()
    n = 0
    for toks, ids in zip(tok([q.text for q in queries]), got, strict=True):
        full = np.asarray(raw.r.get_scores(toks)) if toks else np.zeros(len(raw.doc_ids))
        pos = np.nonzero(full > 0)[0]
        want = sorted(pos.tolist(), key=lambda i: (-full[i], raw.doc_ids[i]))[:K]
        n += [raw.doc_ids[i] for i in want] == ids
    return n


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def overlap_at_10(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x[:10]) & set(y[:10])) / 10 for x, y in zip(a, b, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["dl19", "dl20", "dl21", "dl22"],
                    help="datasets whose candidate passages form the corpus")
    ap.add_argument("--queries", nargs="+", default=["dl19", "dl20"], help="query sets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rank-bm25-queries", type=int, default=20,
                    help="queries timed for rank_bm25 (it is slow); 0 = all")
    ap.add_argument("--skip-rank-bm25", action="store_true")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from rankstack.retrieve.bm25 import numba_available

    console = Console(width=max(Console().width, 150))
    docs, queries = load(args.datasets, args.queries)
    console.print(f"corpus: {len(docs)} passages from {'+'.join(args.datasets)}; "
                  f"{len(queries)} queries from {'+'.join(args.queries)}; k={K}, "
                  f"k1={K1}, b={B}, repeats={args.repeats}")
    impls: list[Impl] = [Rankstack(docs, queries)]
    if numba_available():
        impls.append(RawBM25S(docs, "numba"))
    impls.append(RawBM25S(docs, "numpy"))
    nq_slow = len(queries) if args.rank_bm25_queries <= 0 else min(args.rank_bm25_queries,
                                                                    len(queries))
    if not args.skip_rank_bm25:
        impls.append(RankBM25(docs))
    qsets = {im.name: (queries[:nq_slow] if isinstance(im, RankBM25) else queries)
             for im in impls}

    # Untimed warm-up: numba JIT compilation happens here.
    jit: dict[str, float] = {}
    for im in impls:
        im.index()
        jit[im.name], _ = timed(lambda im=im: im.search(qsets[im.name][:2]))

    t_index: dict[str, list[float]] = {im.name: [] for im in impls}
    t_search: dict[str, list[float]] = {im.name: [] for im in impls}
    results: dict[str, list[list[str]]] = {}
    for r in range(args.repeats):
        for im in impls:
            dt, _ = timed(im.index)
            t_index[im.name].append(dt)
            dt, res = timed(lambda im=im: im.search(qsets[im.name]))
            t_search[im.name].append(dt)
            results[im.name] = res
        console.print(f"  repeat {r + 1}/{args.repeats} done", highlight=False)

    idx_med = {n: statistics.median(v) for n, v in t_index.items()}
    qps = {n: len(qsets[n]) / statistics.median(v) for n, v in t_search.items()}
    ref_fast = "bm25s (numba)" if "bm25s (numba)" in qps else "bm25s (numpy)"
    slow = "rank_bm25 (BM25Okapi)"
    main_name = impls[0].name

    table = Table(title=f"BM25, {len(docs)} passages, top-{K}, 1 thread "
                        f"(medians of {args.repeats})")
    for col in ("implementation", "index s", "queries/s", "q timed", "first call s",
                f"q/s vs {slow.split()[0]}", f"q/s vs {ref_fast}", "index vs rank_bm25",
                "top-10 overlap vs rankstack"):
        table.add_column(col, justify="right" if col != "implementation" else "left")
    for im in impls:
        n = im.name
        nq = len(qsets[n])
        ov = overlap_at_10(results[n], results[main_name][:nq])
        table.add_row(
            n, f"{idx_med[n]:.2f}", f"{qps[n]:.1f}", str(nq), f"{jit[n]:.2f}",
            f"{qps[n] / qps[slow]:.1f}x" if slow in qps else "-",
            f"{qps[n] / qps[ref_fast]:.2f}x",
            f"{idx_med[slow] / idx_med[n]:.1f}x faster" if slow in idx_med else "-",
            f"{ov:.3f}",
        )
    console.print(table)
    raw = next((im for im in impls if isinstance(im, RawBM25S)), None)
    if raw is not None:
        same = identical_under_rule(raw, queries, results[main_name])
        console.print(f"{main_name} top-{K} identical to {raw.name}'s scores of the whole index "
                      f"cut by rankstack's tie-break (score desc, doc id asc): {same}/"
                      f"{len(queries)} queries (raw bm25s breaks score ties arbitrarily, hence "
                      f"its top-10 overlap below 1)")
    if slow in qps:
        console.print(f"rank_bm25 timed on the first {nq_slow} of {len(queries)} queries.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
