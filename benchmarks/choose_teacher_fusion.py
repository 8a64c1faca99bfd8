"""Choose the teacher fusion on training queries only (DL21 + DL22 judgments, never DL19/DL20).

Given the members' teacher runs over the distillation pool (``rankstack teach``, BM25 top-20),
evaluate nDCG@10 on the DL21 and DL22 queries of the pool for each member, BM25, and z-score
CombSUM fusions over a grid of weights, and print/write the table; the chosen fusion is the
grid point with the best mean of the DL21 and DL22 figures (ties -> the simpler fusion, first
in grid order). Usage:

    python benchmarks/choose_teacher_fusion.py runs/distill/teacher_mpnet.txt \\
        runs/distill/teacher_nomic.txt --out benchmarks/results/teacher_fusion_choice.json
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from rankstack.evaluate.evaluator import evaluate
from rankstack.io._base import atomic_write
from rankstack.records import Run
from rankstack.retrieve.fusion import fuse
from rankstack.sources import load_qrels_arg, load_run_arg


def _only(run: Run, qids: set[str], depth: int) -> Run:
    return Run({q: r for q, r in run.items() if q in qids}, name=run.name).top(depth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("members", nargs=2, help="teacher runs over the pool: mpnet, nomic")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    mp, nm = (load_run_arg(p) for p in a.members)
    table = []
    for ds in ("dl21", "dl22"):
        qrels = load_qrels_arg(ds)
        bm25 = load_run_arg(ds)
        qids = set(qrels) & set(mp) & set(nm)
        sub = {"mpnet": _only(mp, qids, a.depth), "nomic": _only(nm, qids, a.depth),
               "bm25": _only(bm25, qids, a.depth)}
        table.append((ds, len(qids), qrels, sub))
    grid = [(w, b) for w, b in itertools.product([i / 10 for i in range(11)], [0.0, 0.1, 0.2, 0.3])]
    rows = []
    for w_mp, w_bm in grid:
        res = {}
        for ds, _n, qrels, sub in table:
            runs = [sub["mpnet"], sub["nomic"]] + ([sub["bm25"]] if w_bm else [])
            weights = [w_mp, 1 - w_mp] + ([w_bm] if w_bm else [])
            fused = fuse(runs, method="combsum", norm="zscore", weights=weights, depth=a.depth)
            res[ds] = evaluate(fused, qrels).aggregates["nDCG@10"]
        rows.append({"w_mpnet": w_mp, "w_nomic": round(1 - w_mp, 1), "w_bm25": w_bm,
                     "dl21": res["dl21"], "dl22": res["dl22"],
                     "mean": (res["dl21"] + res["dl22"]) / 2})
    best = max(rows, key=lambda r: r["mean"])
    bm = {ds: evaluate(sub["bm25"], qrels).aggregates["nDCG@10"] for ds, _, qrels, sub in table}
    print("queries: " + ", ".join(f"{ds} {n}" for ds, n, _, _ in table))
    print(f"BM25 top-{a.depth}: dl21 {bm['dl21']:.4f}  dl22 {bm['dl22']:.4f}")
    print("w_mpnet w_nomic w_bm25   dl21    dl22    mean")
    for r in rows:
        if r["w_bm25"] == 0.0 or r is best:
            print(f"{r['w_mpnet']:7.1f} {r['w_nomic']:7.1f} {r['w_bm25']:6.1f}  {r['dl21']:.4f}  "
                  f"{r['dl22']:.4f}  {r['mean']:.4f}{'  <- chosen' if r is best else ''}")
    if a.out:
        with atomic_write(a.out) as f:
            f.write(json.dumps({"bm25": bm, "grid": rows, "chosen": best, "depth": a.depth,
                                "members": a.members}, indent=1))


if __name__ == "__main__":
    main()
