"""Re-ranking and teaching on the training engine: queries sharded over Lightning ranks.

The same ``accelerator / devices / num_nodes / strategy`` settings as ``rankstack fit``
(:func:`rankstack.train.fit.lightning_devices`) decide how many ranks run: ``devices: 2`` on
CPU is two gloo/DDP processes, on GPUs ``devices: -1`` uses every GPU, ``num_nodes`` spans
machines. :func:`launch` starts Lightning Fabric (its launcher re-runs the command once per
extra rank, as ``fit`` does) and returns this process's :class:`Ranks`; with the defaults (one
CPU device) no Fabric is started and the same code runs as rank 0 of 1.

:func:`rerank_sharded` then, on every rank:

1. loads every rank's journal (``<base>.journal.jsonl`` for rank 0,
   ``<base>.journal.rank<r>.jsonl`` for rank ``r``; all must carry the job's header) and waits
   for all ranks, so they agree on what is left;
2. shards the unfinished groups of queries (step 3) over the ranks, balanced by text length
   (query + passage characters of the candidates to score; longest first, each to the least
   loaded rank), each shard kept in run order;
3. re-ranks its shard group by group with the one re-ranker it was given
   (``reranker.rerank(run, queries, docs)``; every depth / missing-doc policy is the
   re-ranker's), appending each finished group to its own journal (flushed and fsynced).
   Groups (about ``chunk_pairs`` pairs, at most ``chunk_queries`` queries, consecutive in run
   order) are cut from the whole run, not from a shard, and sharded whole; a group with any
   query missing from the journals is redone whole. So the re-ranker sees the same groups,
   hence the same batches, on any number of ranks and after any resume;
4. waits for all ranks; rank 0 reads all journals back and returns the merged Run in the
   candidates' query order, and the ranks' reports summed (other ranks: no run).

A kill of any rank ends the job (Lightning's launcher stops the others); running the same
command again resumes: finished queries come from the journals, whatever the number of ranks
now, and only the rest is re-ranked. With deterministic kernels (CPU, the same threads per
process) the merged run is the single-process run exactly, in any dtype; on GPUs scores may
differ within the dtype's round-off.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, InputError, RankstackError
from rankstack.io.journal import RankingJournal, inputs_fingerprint
from rankstack.records import Doc, Query, Ranking, Run
from rankstack.rerank.report import RerankReport, add_reports

log = logging.getLogger("rankstack.rerank")


@dataclass
class DeviceSettings:
    """Where inference runs; the names and meaning of :class:`~rankstack.train.fit.TrainConfig`."""

    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"

    def lightning(self) -> dict[str, Any]:
        """Checked keywords for ``lightning.Fabric``."""
        from rankstack.train.fit import lightning_devices

        return lightning_devices(self.accelerator, self.devices, self.num_nodes, self.strategy)

    @property
    def single_process(self) -> bool:
        """One CPU process (the defaults): no Fabric is started."""
        from rankstack.train.fit import parse_devices

        return (self.accelerator == "cpu" and parse_devices(self.devices) == 1
                and self.num_nodes == 1 and self.strategy == "auto")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> DeviceSettings:
        """From CLI / config values; ``None`` entries keep the defaults."""
        values = {k: v for k, v in (values or {}).items() if v is not None}
        unknown = set(values) - {"accelerator", "devices", "num_nodes", "strategy"}
        if unknown:
            raise ConfigError(f"unknown device setting(s) {', '.join(sorted(unknown))} "
                              f"(known: accelerator, devices, num_nodes, strategy)")
        return cls(**values)


class Ranks:
    """This process's place among the ranks of one job (rank 0 of 1 without Fabric)."""

    def __init__(self, fabric: Any = None) -> None:
        self.fabric = fabric

    @property
    def rank(self) -> int:
        return 0 if self.fabric is None else int(self.fabric.global_rank)

    @property
    def world_size(self) -> int:
        return 1 if self.fabric is None else int(self.fabric.world_size)

    @property
    def device(self) -> str:
        """The device this rank's model belongs on (``cpu``, ``cuda:1``, ...)."""
        return "cpu" if self.fabric is None else str(self.fabric.device)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.fabric is not None and self.world_size > 1:
            self.fabric.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if self.fabric is None or self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def launched_rank() -> int:
    """This process's rank as its launcher put it in the environment, before any Fabric
    exists: 0 for a plain command or the first rank; > 0 for the processes Lightning's
    launcher starts (``LOCAL_RANK``), other nodes (``NODE_RANK``), torchrun (``RANK``) and
    SLURM tasks (``SLURM_PROCID``). Rank 0 holds the job's lock; the others lock only their
    own journals."""
    for var in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def launch(settings: DeviceSettings | Mapping[str, Any] | None = None) -> Ranks:
    """Start the ranks of ``settings`` (see the module doc); returns this process's Ranks.

    Call it before loading models (each rank loads its own copy, on :attr:`Ranks.device`).
    With a multi-process strategy the launcher re-runs the current command for every other
    local rank, so call it from a script or the CLI, not an interactive session.
    """
    if not isinstance(settings, DeviceSettings):
        settings = DeviceSettings.from_mapping(settings)
    kwargs = settings.lightning()
    if settings.single_process:
        return Ranks()
    from rankstack.errors import require

    L = require("lightning", "train", "multi-device re-ranking", package="lightning")
    fabric = L.Fabric(**kwargs, precision="32-true")
    fabric.launch()
    log.info("rank %d of %d on %s", fabric.global_rank, fabric.world_size, fabric.device)
    return Ranks(fabric)


def shard_by_cost(costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Indices ``0..len(costs)-1`` split into ``world_size`` shards of about equal total cost.

    Longest first, each item to the least loaded shard (ties: the lowest rank); every shard
    is returned in ascending index order. Deterministic, so every rank computes the same split.
    """
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, not {world_size}")
    loads = [0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda j: (-int(costs[j]), j)):
        r = min(range(world_size), key=lambda k: (loads[k], k))
        shards[r].append(i)
        loads[r] += int(costs[i]) + 1  # +1: every query costs something, even empty text
    return [sorted(s) for s in shards]


class ShardedJournal:
    """The per-rank journals of one job: ``<base>`` (rank 0) and ``<stem>.rank<r><suffix>``."""

    def __init__(self, base: str | os.PathLike[str], header: Mapping[str, Any]) -> None:
        self.base = Path(base)
        self.header = dict(header)

    def path(self, rank: int) -> Path:
        if rank == 0:
            return self.base
        return self.base.with_name(f"{self.base.stem}.rank{rank}{self.base.suffix}")

    def paths(self) -> list[Path]:
        """Every existing journal of this job (rank 0's first, then by rank)."""
        pattern = f"{glob.escape(self.base.stem)}.rank*{glob.escape(self.base.suffix)}"
        others = sorted(self.base.parent.glob(pattern),
                        key=lambda p: _rank_of(p, self.base))
        return [p for p in [self.base, *others] if p.exists()]

    def journal(self, rank: int) -> RankingJournal:
        return RankingJournal(self.path(rank), self.header)

    def load(self, latest: bool = False) -> dict[str, Ranking]:
        """Rankings recorded by any rank (a header of another job: ConfigError). A query
        recorded twice (its group was redone after a kill) keeps its first record, or with
        ``latest`` the one in the most recently modified journal."""
        done: dict[str, Ranking] = {}
        paths = self.paths()
        if latest:
            paths.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for p in paths:
            for qid, r in RankingJournal(p, self.header).load().items():
                done.setdefault(qid, r)
        return done

    def remove(self) -> None:
        for p in self.paths():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _rank_of(path: Path, base: Path) -> int:
    tail = path.name[len(base.stem) + len(".rank"):]
    tail = tail[: len(tail) - len(base.suffix)] if base.suffix else tail
    return int(tail) if tail.isdigit() else 1 << 30


@dataclass
class ShardedResult:
    """What :func:`rerank_sharded` did; ``run`` is the merged run on rank 0, else ``None``."""

    run: Run | None
    journal: ShardedJournal
    rank: int = 0
    world_size: int = 1
    queries: int = 0
    resumed_queries: int = 0
    scored_queries: int = 0
    pairs_scored: int = 0
    seconds: float = 0.0
    #: per rank: queries, pairs and seconds of this invocation
    per_rank: list[dict[str, Any]] = field(default_factory=list)
    #: the re-ranker's reports of this invocation, summed over groups and ranks (rank 0)
    report: RerankReport | None = None

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries,
                "resumed_queries": self.resumed_queries, "scored_queries": self.scored_queries,
                "pairs_scored": self.pairs_scored, "seconds": round(self.seconds, 3),
                "pairs_per_second": round(self.pairs_per_second, 2),
                "world_size": self.world_size, "per_rank": self.per_rank,
                "report": None if self.report is None else self.report.to_dict()}

    def summary(self) -> str:
        return (f"re-ranked {self.pairs_scored} pairs of {self.scored_queries} queries on "
                f"{self.world_size} rank(s) in {self.seconds:.1f}s "
                f"({self.pairs_per_second:.1f} pairs/s); {self.resumed_queries} queries "
                f"resumed from the journals")

    def remove_journals(self) -> None:
        """Delete the journals (rank 0, once the merged run is safely written)."""
        self.journal.remove()


def _groups(qids: list[str], sizes: Mapping[str, int], chunk_pairs: int,
            chunk_queries: int | None) -> Iterator[list[str]]:
    group: list[str] = []
    n = 0
    for q in qids:
        group.append(q)
        n += sizes[q]
        if n >= chunk_pairs or (chunk_queries is not None and len(group) >= chunk_queries):
            yield group
            group, n = [], 0
    if group:
        yield group


def _report(reranker: Any) -> RerankReport | None:
    rep = getattr(reranker, "last_report", None)
    return rep if isinstance(rep, RerankReport) else None


def rerank_sharded(reranker: Any, run: Run, queries: Mapping[str, Query],
                   docs: Mapping[str, Doc], *, journal: str | os.PathLike[str],
                   header: Mapping[str, Any] | None = None, ranks: Ranks | None = None,
                   depth: int | None = None, chunk_pairs: int = 256,
                   chunk_queries: int | None = None, name: str | None = None,
                   show_progress: bool = True) -> ShardedResult:
    """Re-rank ``run`` with ``reranker`` over the ranks of ``ranks`` (see the module doc).

    ``journal``: rank 0's journal path (others derive theirs from it). ``header`` names the
    job in the journals (default: the re-ranker's ``journal_identity()``, ``depth`` and a
    fingerprint of the candidates); a journal with another header is refused. ``depth``:
    passed to every ``reranker.rerank`` call if given (else the re-ranker's own). ``name``:
    the merged run's name (default ``<run>+<model>``, as the re-rankers name their runs).
    Rank 0 returns the merged run; logs the summed report's warnings once.
    """
    ranks = ranks or Ranks()
    if len(run) == 0:
        raise InputError(f"run {run.name!r} has no queries: nothing to re-rank")
    if chunk_pairs < 1 or (chunk_queries is not None and chunk_queries < 1):
        raise ConfigError("chunk_pairs and chunk_queries must be >= 1")
    depth_arg = depth
    depth = getattr(reranker, "depth", None) if depth is None else depth
    strict = getattr(reranker, "on_missing", "raise") == "raise"
    plan = list(run)
    sizes: dict[str, int] = {}
    costs: dict[str, int] = {}
    for qid in plan:  # every input checked before any model work
        query = queries.get(qid)
        if query is None:
            if strict:
                raise InputError(f"query {qid!r} of run {run.name!r} has no text (not in the "
                                 f"queries)", field="query_id")
            sizes[qid], costs[qid] = 0, 0
            continue
        head = run[qid].docs if depth is None else run[qid].docs[:depth]
        cost = 0
        for sd in head:
            doc = docs.get(sd.doc_id)
            if doc is None:
                if strict:
                    raise InputError(f"doc {sd.doc_id!r} (query {qid!r}) is not in the corpus",
                                     field="doc_id")
                continue
            cost += len(query.text) + len(doc.full_text)
        sizes[qid], costs[qid] = len(head), cost
    rname = str(getattr(reranker, "name", "reranker"))
    if header is None:
        identity = (reranker.journal_identity() if hasattr(reranker, "journal_identity")
                    else {"model": rname})
        header = {"rankstack_rerank_journal": 2, **identity, "depth": depth,
                  "candidates": inputs_fingerprint(run, queries, docs, depth)}
    sj = ShardedJournal(journal, header)

    t0 = time.perf_counter()
    done = sj.load()
    ranks.barrier()  # nobody appends before every rank has read what is done
    # Groups come from the whole plan, never from a shard: the re-ranker sees the same groups
    # (so the same batches and scores) on any number of ranks and after any resume.
    groups = [g for g in _groups(plan, sizes, chunk_pairs, chunk_queries)
              if any(q not in done for q in g)]
    shards = shard_by_cost([sum(costs[q] for q in g) for g in groups], ranks.world_size)
    mine_groups = [groups[i] for i in shards[ranks.rank]]
    mine = [q for g in mine_groups for q in g]
    n_pending = sum(len(g) for g in groups)
    log.info("rank %d/%d: %d of %d pending queries (%d resumed)", ranks.rank, ranks.world_size,
             len(mine), n_pending, len(plan) - n_pending)

    total: RerankReport | None = None
    dropped: list[str] = []
    pairs = 0
    bar = None
    if show_progress and ranks.is_zero and mine:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(sizes[q] for q in mine), unit="pair",
                   desc=f"re-ranking ({Path(rname.rstrip('/')).name or rname}"
                        + (f", rank 0 of {ranks.world_size})" if ranks.world_size > 1 else ")"))
    with contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        # one bar per rank here, and one set of warnings (rank 0's, of the summed report)
        for attr in ("show_progress", "warn"):
            if getattr(reranker, attr, False):
                setattr(reranker, attr, False)
                stack.callback(setattr, reranker, attr, True)
        jw = stack.enter_context(sj.journal(ranks.rank).writer()) if mine else None
        for group in mine_groups:
            sub = Run({q: run[q] for q in group}, name=run.name)
            out = (reranker.rerank(sub, queries, docs) if depth_arg is None
                   else reranker.rerank(sub, queries, docs, depth=depth_arg))
            got = [out[q] for q in group if q in out]
            dropped += [q for q in group if q not in out]
            jw.write(got)  # type: ignore[union-attr]
            rep = _report(reranker)
            if rep is not None:
                total = rep if total is None else add_reports(total, rep)
            n = sum(sizes[q] for q in group)
            pairs += n
            if bar is not None:
                bar.update(n)
    mine_s = time.perf_counter() - t0
    info = {"rank": ranks.rank, "queries": len(mine), "pairs": pairs,
            "seconds": round(mine_s, 3), "dropped": dropped, "report": total}
    everyone = ranks.gather(info)  # also the barrier: all journals are complete now
    result = ShardedResult(None, sj, ranks.rank, ranks.world_size, queries=len(plan),
                           resumed_queries=len(plan) - n_pending, scored_queries=n_pending,
                           pairs_scored=sum(i["pairs"] for i in everyone))
    result.per_rank = [{k: i[k] for k in ("rank", "queries", "pairs", "seconds")}
                       for i in everyone]
    for i in everyone:
        if i["report"] is not None:
            result.report = (i["report"] if result.report is None
                             else add_reports(result.report, i["report"]))
    if not ranks.is_zero:
        result.seconds = time.perf_counter() - t0
        return result
    done = sj.load(latest=True)
    skipped = {q for i in everyone for q in i["dropped"]}
    lost = [q for q in plan if q not in done and q not in skipped]
    if lost:
        raise RankstackError(f"{len(lost)} queries are in no rank's journal after all ranks "
                             f"finished (first: {lost[0]!r}); run the command again to redo them")
    default_name = f"{run.name}+{Path(rname.rstrip('/')).name or rname}"
    merged = Run(name=name or default_name)
    for q in plan:
        if q in done:
            merged.add(done[q])
    result.run = merged
    result.seconds = time.perf_counter() - t0
    if result.report is not None:
        result.report.resumed_queries = result.resumed_queries
        result.report.seconds = result.seconds
        if getattr(reranker, "warn", False):
            for warning in result.report.warnings():
                log.warning("%s", warning)
    log.info("%s", result.summary())
    return result


__all__ = ["DeviceSettings", "Ranks", "ShardedJournal", "ShardedResult", "launch",
           "launched_rank", "rerank_sharded", "shard_by_cost"]
