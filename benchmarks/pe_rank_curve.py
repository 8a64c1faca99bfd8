"""PE-Rank training curves: the trainer's CSV logs of both stages as one CSV and a PNG.

    python benchmarks/pe_rank_curve.py runs/pe_rank/stage1 runs/pe_rank/stage2 \
        --csv runs/pe_rank/curve.csv --png runs/pe_rank/curve.png

Each stage directory is a ``rankstack fit`` (``task: pe-rank``) ``out_dir``; its
``logs/version_*/metrics.csv`` rows (step, loss and, for the ranking stage, listmle,
listmle_content, kl) are written with a ``stage`` column. The PNG needs matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stages", nargs="+", type=Path, help="out_dir of each stage")
    p.add_argument("--csv", type=Path, required=True)
    p.add_argument("--png", type=Path, default=None)
    args = p.parse_args(argv)

    from rankstack.io import atomic_write
    from rankstack.llm.pe_rank.fit import training_curve

    rows = []
    for d in args.stages:
        stage = _stage_name(d)
        curve = training_curve(d)
        if not curve:
            sys.exit(f"{d}: no logs/version_*/metrics.csv")
        rows += [{"stage": stage, **r} for r in curve]
    keys = ["stage", "step", "loss", "listmle", "listmle_content", "kl"]
    with atomic_write(args.csv) as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    for stage in dict.fromkeys(r["stage"] for r in rows):
        rs = [r for r in rows if r["stage"] == stage]
        print(f"{stage}: {len(rs)} logged steps, loss {rs[0]['loss']:.3f} (step "
              f"{rs[0]['step']:.0f}) -> {rs[-1]['loss']:.3f} (step {rs[-1]['step']:.0f})")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        stages = list(dict.fromkeys(r["stage"] for r in rows))
        fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
        for ax, stage in zip(axes[0], stages, strict=True):
            rs = [r for r in rows if r["stage"] == stage]
            for key in ("loss", "listmle", "listmle_content", "kl"):
                pts = [(r["step"], r[key]) for r in rs if key in r]
                if pts:
                    ax.plot(*zip(*pts, strict=True), label=key)
            ax.set_title(f"PE-Rank {stage}")
            ax.set_xlabel("optimizer step")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")
    return 0


def _stage_name(d: Path) -> str:
    import json

    cfg = d / "model" / "rankstack_train.json"
    if cfg.is_file():
        return json.loads(cfg.read_text(encoding="utf-8"))["pe_rank"]["stage"]
    return d.name


if __name__ == "__main__":
    sys.exit(main())
