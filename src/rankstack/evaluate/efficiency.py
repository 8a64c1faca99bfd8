"""Cost measurement for :mod:`rankstack.evaluate.compare`: memory high-water marks, latency
percentiles, ratios to a reference, the quality-vs-cost Pareto front and its plot.

Memory is measured per model in its own fresh process (see :class:`PeakMemory`): Linux keeps
a resident-set high-water mark per process (``VmHWM`` in ``/proc/self/status``), and writing
``5`` to ``/proc/self/clear_refs`` resets it to the current RSS. The worker resets it after
the interpreter, rankstack and the dataset are loaded, so ``peak - base`` is what loading
and running the model added (its libraries, weights, activations). Where the reset is not
allowed the mark cannot be reset, and ``peak`` is the high-water mark since the process
started (stated in :attr:`PeakMemory.method`). GPU memory is torch's
``max_memory_allocated`` when the model ran on a CUDA device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from rankstack.errors import ConfigError
from rankstack.io import atomic_write

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux), else None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def hwm_bytes() -> int | None:
    """Resident-set high-water mark of this process: ``VmHWM``, else ``ru_maxrss``."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KB on Linux
    except (ImportError, OSError):
        return None


class PeakMemory:
    """Resident-set (and CUDA) high-water mark of this process from :meth:`start` on."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.reset_ok = False
        self._cuda = False

    @property
    def method(self) -> str:
        if self.reset_ok:
            return ("VmHWM of a fresh process per model, reset (/proc/self/clear_refs) after "
                    "interpreter + rankstack + dataset; added = peak - RSS at the reset")
        return ("high-water mark since process start (VmHWM / ru_maxrss; could not reset); "
                "added = peak - RSS after interpreter + rankstack + dataset")

    def start(self) -> None:
        """Reset the high-water mark to the current RSS and remember that RSS as the base."""
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self.reset_ok = True
        except OSError:
            self.reset_ok = False
        self.base = rss_bytes()

    def start_cuda(self) -> None:
        """Reset torch's CUDA peak counters (call once the model is on the device)."""
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
            self._cuda = True

    def read(self) -> dict[str, Any]:
        """``peak_rss_mb``, ``base_rss_mb``, ``added_rss_mb``, ``gpu_peak_mb`` (None if no GPU)."""
        peak = hwm_bytes()
        out: dict[str, Any] = {
            "peak_rss_mb": None if peak is None else peak / MB,
            "base_rss_mb": None if self.base is None else self.base / MB,
            "added_rss_mb": None if peak is None or self.base is None
            else max(0, peak - self.base) / MB,
            "gpu_peak_mb": None,
            "method": self.method,
        }
        if self._cuda:
            import torch

            out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        return out


def uses_cuda() -> bool:
    """True if torch is imported and has initialised a CUDA device in this process."""
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default); nan if empty."""
    import numpy as np

    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that pin the math libraries of a worker to ``threads``."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, not {threads!r}")
    t = str(threads)
    return {k: t for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                           "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS")} | {
        "TOKENIZERS_PARALLELISM": "false"}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None where either is missing or ``b`` is not positive."""
    if a is None or b is None or not (b > 0) or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower cost and higher quality).

    ``points`` are ``(cost, quality)``; a point is dominated if another has cost <= and
    quality >= with at least one strict. Returned in increasing cost.
    """
    idx = [i for i, (c, q) in enumerate(points) if not (math.isnan(c) or math.isnan(q))]
    front = []
    for i in idx:
        ci, qi = points[i]
        dominated = any(
            (cj <= ci and qj >= qi) and (cj < ci or qj > qi)
            for j, (cj, qj) in ((j, points[j]) for j in idx if j != i))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def plot_quality_cost(path: str | os.PathLike[str], labels: Sequence[str],
                      costs: Sequence[float], qualities: Sequence[float], *, measure: str,
                      cost_label: str, baseline: tuple[str, float] | None = None,
                      title: str = "") -> list[int]:
    """Scatter quality vs cost (log x), the Pareto front as a step line; PNG, atomic.

    ``baseline`` (label, quality) is drawn as a horizontal dashed line (a given first stage
    has no measured cost). Returns the indices on the Pareto front.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = list(zip(costs, qualities, strict=True))
    front = pareto_front(pts)
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    on = set(front)
    for i, (label, (c, q)) in enumerate(zip(labels, pts, strict=True)):
        if math.isnan(c) or math.isnan(q):
            continue
        ax.scatter([c], [q], s=60, zorder=3, marker="o" if i in on else "x",
                   color="tab:red" if i in on else "tab:blue")
        ax.annotate(label, (c, q), textcoords="offset points", xytext=(6, 5), fontsize=8)
    if front:
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", linewidth=1, alpha=0.7,
                label="Pareto front (lower cost, higher quality)")
    if baseline is not None and not math.isnan(baseline[1]):
        ax.axhline(baseline[1], color="gray", linestyle="--", linewidth=1,
                   label=f"{baseline[0]} (baseline, no cost measured)")
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(measure)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    return front
