"""The Rank-DistiLLM levers, one training run each: train, re-rank DL19/DL20 BM25 top-100, score.

Every variant is the base student config plus ``--set`` overrides, trained with ``rankstack fit``
(so it resumes from ``last.ckpt`` when re-run), then re-ranks each dataset's candidates with
``rankstack rerank`` and is scored with ``rankstack evaluate`` -- the README's commands, run in
sequence, never two at once (the timings are for a 2-core machine). Hyper-parameters are never
chosen here: the table reports each lever's effect, it does not pick one.

    python benchmarks/distill_ablation.py --base configs/distill/student_shallow.yaml \\
        --variant ranknet: --variant kl:loss=kl,data.targets=score \\
        --variant top8:data.depth=8 --threads 2 --out benchmarks/results/ablation_shallow.json

A variant is ``NAME:KEY=VALUE,KEY=VALUE`` (``NAME:`` alone is the base config). Results are
written after every variant (atomically), and a variant whose run files and scores are already
recorded for the same overrides is not trained or scored again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise SystemExit(f"error: --variant {text!r}: expected NAME:KEY=VALUE,... (NAME: for the base)")
    sets = [s for s in rest.split(",") if s]
    for s in sets:
        if "=" not in s:
            raise SystemExit(f"error: --variant {text!r}: {s!r} is not KEY=VALUE")
    return name, sets


def run(cmd: list[str], log: Path) -> float:
    """Run one CLI step, its output appended to ``log``; returns the wall seconds."""
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"error: step failed (exit {proc.returncode}), see {log}: {' '.join(cmd)}")
    return time.perf_counter() - t0


def ndcg10(path: Path) -> float:
    return json.loads(path.read_text())["runs"][0]["aggregates"]["nDCG@10"]


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="student training config (YAML)")
    ap.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,...")
    ap.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs/ablation", help="models, runs and logs go here")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    if len({n for n, _ in variants}) != len(variants):
        raise SystemExit("error: variant names must be unique")
    if not Path(args.base).is_file():
        raise SystemExit(f"error: --base {args.base}: no such file")

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if results.get("base") not in (None, args.base):
        raise SystemExit(f"error: {out} holds results for base {results['base']}, not {args.base}")
    results.update(base=args.base, datasets=args.datasets, threads=args.threads)
    rows = results.setdefault("variants", {})
    root = Path(args.runs_dir)
    for name, sets in variants:
        row = rows.get(name)
        if row and row.get("sets") == sets and all(d in row.get("ndcg10", {}) for d in args.datasets):
            print(f"[{name}] already measured, skipped")
            continue
        vdir = root / name
        vdir.mkdir(parents=True, exist_ok=True)
        log = vdir / "ablation.log"
        row = {"sets": sets, "ndcg10": {}, "rerank_s": {}}
        cmd = ["rankstack", "fit", "--config", args.base, "--set", f"out_dir={vdir / 'student'}",
               "--set", f"threads={args.threads}"]
        for s in sets:
            cmd += ["--set", s]
        print(f"[{name}] training ({' '.join(sets) or 'base config'})", flush=True)
        row["train_s"] = round(run(cmd, log), 1)
        model = vdir / "student" / "model"
        for ds in args.datasets:
            run_file = vdir / f"{ds}.txt"
            row["rerank_s"][ds] = round(run(
                ["rankstack", "rerank", "--model", str(model), "--candidates", ds,
                 "--threads", str(args.threads), "--out", str(run_file)], log), 1)
            scores = vdir / f"{ds}.eval.json"
            run(["rankstack", "evaluate", str(run_file), "--qrels", ds, "--json", str(scores)], log)
            row["ndcg10"][ds] = round(ndcg10(scores), 4)
        row["mean"] = round(sum(row["ndcg10"].values()) / len(row["ndcg10"]), 4)
        rows[name] = row
        write_atomic(out, results)
        print(f"[{name}] " + "  ".join(f"{d} {v:.4f}" for d, v in row["ndcg10"].items())
              + f"  train {row['train_s']:.0f}s", flush=True)

    print("\n| variant | overrides | " + " | ".join(args.datasets) + " | mean | train s |")
    print("|---|---|" + "---|" * len(args.datasets) + "---|---|")
    for name, _ in variants:
        r = rows[name]
        print(f"| {name} | {' '.join(r['sets']) or '(base)'} | "
              + " | ".join(f"{r['ndcg10'][d]:.4f}" for d in args.datasets)
              + f" | {r['mean']:.4f} | {r['train_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
