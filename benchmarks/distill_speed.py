"""Teacher vs student re-ranking cost, measured side by side (interleaved, same process).

Models: the teacher's members (all-mpnet-base-v2, nomic-embed-text-v1.5; fetched by
``scripts/fetch_models.py``), the bundled all-MiniLM-L6-v2 bi-encoder, and the students'
architectures: a MiniLM-L6 cross-encoder and a shallow one (``keep_layers``). Speed does not
depend on the weights' values, so a student directory is optional (``--ce DIR``,
``--shallow DIR``); without one the architecture is built from the bundled MiniLM with a seeded
untrained head. ``--dense-index DIR`` (built by ``rankstack index --dense``, e.g. with the
bi-encoder student) adds that index's retrieval: each round its encoder embeds the round's
queries and searches the whole index for their top ``--depth``, timed as queries/s next to the
re-rankers' queries/s at the same depth. Each round every model re-ranks a fresh slice of DL19
BM25 pairs (fresh passages, so the bi-encoders' per-text caches never hit); rounds interleave
the models so a busy machine slows all alike. Reported: median pairs/s, its ratio to the fused teacher (whose
cost per pair is the sum of its members'), the weights' size in MB and, with ``--memory``, the
peak memory of scoring one round: each model alone in a fresh process (peak RSS after loading
and scoring, minus the peak RSS of a process that imported the same libraries and loaded
nothing; the teacher's is the sum of its members').

    python benchmarks/distill_speed.py --rounds 3 --queries-per-round 1 --depth 40 \\
        --threads 1 --out benchmarks/results/distill_speed.json
    python benchmarks/distill_speed.py --dense-index runs/distill/dense_minilm ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def weights_mb(scorer) -> float:
    model = getattr(scorer, "model", None)
    if model is None or not hasattr(model, "parameters"):
        return float("nan")
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def _peak_rss_child(model: str | None, family: str | None, threads: int, qs: list[str],
                    ps: list[str], conn) -> None:
    import torch  # noqa: F401 - the baseline holds the libraries every model needs
    import transformers  # noqa: F401

    from rankstack.evaluate.efficiency import MB, hwm_bytes
    from rankstack.rerank.reranker import Reranker

    if model is not None:
        Reranker.from_pretrained(model, family, threads=threads,
                                 show_progress=False).scorer.score_pairs(qs, ps)
    # VmHWM is this process's own high-water mark; ru_maxrss would survive exec and report
    # the spawning parent's peak (it already holds every model)
    conn.send(hwm_bytes() / MB)
    conn.close()


def peak_rss_mb(model: str | None, family: str | None, threads: int, qs: list[str],
                ps: list[str]) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``model`` and scores the pairs
    (``model=None``: the baseline, libraries imported, nothing loaded)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_peak_rss_child, args=(model, family, threads, qs, ps, send))
    proc.start()
    value = recv.recv()
    proc.join()
    return float(value)


def build_cross_encoder(out: Path, keep_layers: int | None) -> Path:
    from rankstack.train.student import load_student, save_student

    model, tok = load_student(None, keep_layers=keep_layers, seed=1234)
    return save_student(model.eval(), tok, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries-per-round", type=int, default=1)
    ap.add_argument("--depth", type=int, default=40, help="pairs per query")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ce", default=None, help="trained MiniLM-L6 cross-encoder student dir")
    ap.add_argument("--shallow", default=None, help="trained shallow cross-encoder student dir")
    ap.add_argument("--keep-layers", type=int, default=2)
    ap.add_argument("--dense-index", default=None,
                    help="a dense index dir: also time retrieval (queries/s) from it")
    ap.add_argument("--memory", action="store_true",
                    help="also measure each model's peak memory, alone in a fresh process")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    from rankstack.datasets import load_dataset
    from rankstack.rerank.reranker import Reranker

    ds = load_dataset("dl19")
    qids = list(ds.run)
    need = args.rounds * args.queries_per_round + 1  # + the warm-up query
    if need > len(qids):
        print(f"error: {need} queries needed, DL19 has {len(qids)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="distill_speed_"))
    ce = args.ce or str(build_cross_encoder(tmp / "ce", None))
    shallow = args.shallow or str(build_cross_encoder(tmp / "shallow", args.keep_layers))
    specs = {
        "all-mpnet-base-v2 (teacher member)": ("bundled:all-mpnet-base-v2", None),
        "nomic-embed-text-v1.5 (teacher member)": ("bundled:nomic-embed-text-v1.5", None),
        "all-MiniLM-L6-v2 bi-encoder": ("bundled:all-MiniLM-L6-v2", None),
        "MiniLM-L6 cross-encoder": (ce, "cross-encoder"),
        f"shallow cross-encoder ({args.keep_layers} layers)": (shallow, "cross-encoder"),
    }
    scorers = {name: Reranker.from_pretrained(m, f, threads=args.threads).scorer
               for name, (m, f) in specs.items()}
    warm_q = ds.queries[qids[-1]].text  # warm-up pairs from a query no round uses
    warm_p = [ds.docs[d.doc_id].full_text for d in ds.run[qids[-1]].docs[:2]]
    for sc in scorers.values():
        sc.score_pairs([warm_q] * len(warm_p), warm_p)
    times: dict[str, list[float]] = {n: [] for n in scorers}
    dense = None
    dense_name = "dense retrieval from the index (queries/s)"
    dense_qps: list[float] = []
    if args.dense_index:
        from rankstack.retrieve.dense import DenseIndex, load_encoder_for_index

        dense = DenseIndex.load(args.dense_index, load_encoder_for_index(
            args.dense_index, threads=args.threads))
        dense.search([ds.queries[qids[-1]]], k=args.depth, show_progress=False)  # warm-up
    for r in range(args.rounds):
        chunk = qids[r * args.queries_per_round:(r + 1) * args.queries_per_round]
        qs, ps = [], []
        for q in chunk:
            for d in ds.run[q].docs[:args.depth]:
                qs.append(ds.queries[q].text)
                ps.append(ds.docs[d.doc_id].full_text)
        for name, sc in scorers.items():
            t = time.perf_counter()
            sc.score_pairs(qs, ps)
            times[name].append(len(qs) / (time.perf_counter() - t))
            print(f"round {r + 1}: {name}: {times[name][-1]:.1f} pairs/s", flush=True)
        if dense is not None:
            t = time.perf_counter()
            dense.search([ds.queries[q] for q in chunk], k=args.depth, show_progress=False)
            dense_qps.append(len(chunk) / (time.perf_counter() - t))
            print(f"round {r + 1}: {dense_name}: {dense_qps[-1]:.2f} queries/s", flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    members = [n for n in med if "teacher member" in n]
    teacher = 1.0 / sum(1.0 / med[n] for n in members)
    rows = {n: {"pairs_per_s": round(v, 2), "queries_per_s": round(v / args.depth, 3),
                "x_teacher": round(v / teacher, 2),
                "weights_mb": round(weights_mb(scorers[n]), 1)} for n, v in med.items()}
    rows["fused teacher (mpnet + nomic)"] = {
        "pairs_per_s": round(teacher, 2), "queries_per_s": round(teacher / args.depth, 3),
        "x_teacher": 1.0, "weights_mb": round(sum(weights_mb(scorers[n]) for n in members), 1)}
    if args.memory:
        base = peak_rss_mb(None, None, args.threads, qs, ps)
        for n, (m, f) in specs.items():
            rows[n]["peak_mb"] = round(peak_rss_mb(m, f, args.threads, qs, ps) - base, 1)
            print(f"peak memory: {n}: {rows[n]['peak_mb']:.1f} MB", flush=True)
        rows["fused teacher (mpnet + nomic)"]["peak_mb"] = round(
            sum(rows[n]["peak_mb"] for n in members), 1)
    if dense is not None:
        qps = statistics.median(dense_qps)
        rows[dense_name] = {"pairs_per_s": None, "queries_per_s": round(qps, 3),
                            "x_teacher": round(qps * args.depth / teacher, 2),
                            "weights_mb": round(weights_mb(dense.encoder), 1),
                            "index_passages": len(dense)}
        times[dense_name] = dense_qps
    print(f"{'model':45s} {'pairs/s':>9s} {'queries/s':>9s} {'x teacher':>9s} "
          f"{'weights MB':>10s} {'peak MB':>8s}")
    for n, row in rows.items():
        pps = f"{row['pairs_per_s']:9.2f}" if row["pairs_per_s"] is not None else f"{'-':>9s}"
        peak = f"{row['peak_mb']:8.1f}" if "peak_mb" in row else f"{'-':>8s}"
        print(f"{n:45s} {pps} {row['queries_per_s']:9.3f} {row['x_teacher']:9.2f} "
              f"{row['weights_mb']:10.1f} {peak}")
    if args.out:
        from rankstack.io import atomic_write

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as fh:
            fh.write(json.dumps({"args": vars(args), "rounds_pairs_per_s": times,
                                 "median": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
