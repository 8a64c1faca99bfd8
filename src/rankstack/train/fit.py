"""The one trainer (PyTorch Lightning) for every trainable family: cross-encoder,
RankLLaMA-style decoder cross-encoder and bi-encoder students (see
:mod:`rankstack.train.modules`), and the PE-Rank stages (:mod:`rankstack.llm.pe_rank.fit`).
One config dialect (:class:`TrainConfig`), checkpoints and exact resume, DDP, a step progress
bar and a CSV log (``<out_dir>/logs/version_N/metrics.csv``: loss and learning rate).

Lightning carries the scale-out: the same :func:`fit` runs on one CPU, several GPUs (DDP) or
several nodes by changing ``devices`` / ``num_nodes`` / ``strategy``.

Data order is a pure function of (seed, step): :class:`StepSampler` yields, for optimizer
step ``s`` and micro-batch ``m``, the groups at positions of a seeded sequence of epoch
permutations. On resume from a checkpoint at global step ``g`` it starts at ``g``, so a
killed-and-resumed run sees exactly the batches an uninterrupted run would: no group is
repeated or skipped, and the total number of steps is ``max_steps``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, require
from rankstack.train.schedule import adamw_linear_schedule  # noqa: F401 - re-export

log = logging.getLogger(__name__)

torch = require("torch", "neural", "training")
L = require("lightning", "train", "training", package="lightning")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved next to the model as ``rankstack_train.json``."""

    out_dir: str = "models/student"
    family: str = "cross-encoder"  # cross-encoder | rankllama | bi-encoder
    backbone: str | None = None  # None = bundled MiniLM
    keep_layers: int | None = None
    lora: dict[str, Any] | None = None
    loss: str = "ranknet"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    group_size: int = 8
    batch_size: int = 4  # groups per micro-batch
    accumulate: int = 1
    max_steps: int = 100
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    query_length: int = 32
    doc_length: int = 160
    precision: str = "auto"  # auto | 32-true | bf16-mixed
    checkpoint_every: int = 50
    seed: int = 0
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "cpu"
    threads: int | None = None
    log_every: int = 10
    # bi-encoder students
    pooling: str = "mean"  # cls | mean | last_token
    normalize: bool = True  # L2-normalise embeddings (cosine); False = dot product
    temperature: float = 0.05  # scores / temperature inside the loss
    in_batch_negatives: bool = True  # loss infonce: every passage of the batch competes
    in_batch_weight: float = 0.0  # other losses: + weight * in-batch InfoNCE
    query_prefix: str = ""
    passage_prefix: str = ""
    append_eos: bool = False

    def validate(self) -> None:
        from rankstack.train.modules import FAMILIES

        if self.family not in FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.pooling not in ("cls", "mean", "last_token"):
            raise ConfigError(f"pooling must be cls, mean or last_token, not {self.pooling!r}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.family == "bi-encoder" and self.keep_layers is not None:
            raise ConfigError("keep_layers applies to cross-encoder students only")
        if self.group_size < 2 and self.loss not in ("bce",):
            raise ConfigError(f"group_size={self.group_size}: listwise/pairwise losses need >= 2")
        for name in ("batch_size", "accumulate", "max_steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.precision not in ("auto", "32-true", "bf16-mixed"):
            raise ConfigError(f"precision must be auto, 32-true or bf16-mixed, not {self.precision!r}")


def parse_devices(value: int | str) -> int | str:
    """A ``devices`` value as Lightning takes it: an int (``"2"`` -> 2), ``"auto"``, ``-1`` or a
    device list such as ``"0,1"``."""
    if isinstance(value, bool):
        raise ConfigError(f"devices must be an integer, 'auto' or a device list, not {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def lightning_devices(accelerator: str, devices: int | str, num_nodes: int,
                      strategy: str) -> dict[str, Any]:
    """The accelerator / devices / num_nodes / strategy keywords of a Lightning ``Trainer`` or
    ``Fabric``, checked; one place for training (:func:`fit`) and inference
    (:mod:`rankstack.rerank.predict`)."""
    if not isinstance(accelerator, str) or not accelerator:
        raise ConfigError(f"accelerator must be a name such as cpu, gpu or auto, not {accelerator!r}")
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
        raise ConfigError(f"num_nodes must be a positive integer, not {num_nodes!r}")
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f"strategy must be a name such as auto or ddp, not {strategy!r}")
    devices = parse_devices(devices)
    if isinstance(devices, int) and devices == 0:
        raise ConfigError("devices must not be 0 (use 1, N, -1 or 'auto')")
    return {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes,
            "strategy": strategy}


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    from rankstack.hf_loading import cpu_has_bf16

    return "bf16-mixed" if accelerator == "cpu" and cpu_has_bf16() else "32-true"


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler whose batch ``b`` depends only on (builder seed, b).

    Batches walk the builder's seeded epoch orders (``epoch_order(e)``), ``batch_size`` groups
    each; an epoch's incomplete tail is not used. Yields lists of ``(epoch, index)`` keys for
    :class:`~rankstack.train.data.GroupDataset`, from batch ``start`` to ``total``; under DDP
    rank ``r`` of ``w`` takes batches ``b`` with ``b % w == r``.
    """

    def __init__(self, builder, batch_size: int, total: int, start: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if len(builder) < batch_size:
            raise ConfigError(f"{len(builder)} training groups is fewer than batch_size={batch_size}")
        self.builder, self.bs, self.total = builder, batch_size, total
        self.start, self.rank, self.world = start, rank, world_size
        self.per_epoch = len(builder) // batch_size
        self._orders: dict[int, list[int]] = {}

    def batch(self, b: int) -> list[tuple[int, int]]:
        epoch, pos = divmod(b, self.per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: self.builder.epoch_order(epoch)}
        order = self._orders[epoch]
        return [(epoch, i) for i in order[pos * self.bs:(pos + 1) * self.bs]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(self.start, self.total):
            if b % self.world == self.rank:
                yield self.batch(b)

    def __len__(self) -> int:
        # Counted from batch 0, not from ``start``: on resume Lightning restores its batch
        # counter within the (single) epoch, so the epoch must end at the run's last batch;
        # a length counted from ``start`` ends it early and the batches are replayed.
        return sum(1 for b in range(self.total) if b % self.world == self.rank)


class GroupData(L.LightningDataModule):
    """A GroupBuilder's groups -> model inputs (the family's batcher) in StepSampler order."""

    def __init__(self, builder, batcher: Callable, cfg: TrainConfig) -> None:
        super().__init__()
        self.builder = builder
        self.batcher = batcher
        self.cfg = cfg

    def collate(self, groups) -> dict[str, Any]:
        from rankstack.train.data import collate_groups

        gb = collate_groups(groups)
        return {**self.batcher(gb), "groups": gb,
                "group_keys": [[g.query_id, len(g)] for g in groups]}

    def train_dataloader(self):
        return step_loader(self.trainer, self.builder, self.cfg, self.collate)


def step_loader(trainer, builder, cfg: TrainConfig, collate: Callable):
    """A DataLoader over ``builder`` in :class:`StepSampler` order, starting after the
    micro-batches a restored ``trainer.global_step`` already consumed (exact resume)."""
    from rankstack.train.data import GroupDataset

    accum = cfg.accumulate
    world = trainer.world_size if trainer is not None else 1
    rank = trainer.global_rank if trainer is not None else 0
    # A restored global_step counts optimizer steps; each took accum micro-batches per rank.
    done = (trainer.global_step if trainer is not None else 0) * accum * world
    total = cfg.max_steps * accum * world
    sampler = StepSampler(builder, cfg.batch_size, total, done, rank, world)
    return torch.utils.data.DataLoader(GroupDataset(builder), batch_sampler=sampler,
                                       collate_fn=collate, num_workers=0)


class _AuditCallback(L.Callback):
    """Appends the group ids of every optimizer step to ``steps.jsonl`` (resume audit)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": trainer.global_step,
                                     "groups": [k[0] for k in batch["group_keys"]]}) + "\n")


class StepProgressBar(L.pytorch.callbacks.TQDMProgressBar):
    """Progress in optimizer steps of ``max_steps`` (training is step-based: Lightning's
    epoch bar read ``Epoch 0/-2`` with ``max_epochs=-1``)."""

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps * trainer.accumulate_grad_batches)
        bar.initial = trainer.global_step * trainer.accumulate_grad_batches
        bar.n = bar.initial
        bar.set_description(f"train (step {trainer.global_step}/{trainer.max_steps})")

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the CSV log's version number tells the user nothing here
        return items

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.train_progress_bar.set_description(
            f"train (step {trainer.global_step}/{trainer.max_steps})", refresh=False)


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips (litlogger / litmodels) from its info log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in record.getMessage()


def quiet_lightning() -> None:
    """Filter Lightning's litlogger/litmodels tips out of its rank-zero log (issue 15.8)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in lg.filters):
            lg.addFilter(_NoTips())


@dataclass
class FitResult:
    model_dir: Path
    steps: int
    wall_time_s: float
    resumed_from: str | None
    final_loss: float | None


def fit(cfg: TrainConfig, builder, *, loss_fn: Callable | None = None,
        callbacks: list | None = None, show_progress: bool = True) -> FitResult:
    """Train a student on the groups of ``builder`` (a :class:`~rankstack.train.data.GroupBuilder`).

    Each epoch re-samples the groups (the builder's groups are a function of seed and epoch).

    Checkpoints go to ``<out_dir>/checkpoints`` every ``checkpoint_every`` steps (plus
    ``last.ckpt``); if ``last.ckpt`` exists the run resumes from it. The final model is a plain
    HF directory ``<out_dir>/model`` with the resolved config as ``rankstack_train.json``.
    """
    from rankstack.train.modules import build

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if len(builder) == 0:
        raise ConfigError(f"no usable training groups: {builder.stats.summary()}")
    out = Path(cfg.out_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, batcher, save = build(cfg)
    if loss_fn is not None:
        module.loss_fn = loss_fn
    data = GroupData(builder, batcher, cfg)
    trainer, resumed, wall, precision = run_trainer(cfg, module, data, callbacks=callbacks,
                                                    show_progress=show_progress)
    final_loss = trainer.callback_metrics.get("loss")
    model_dir = out / "model"
    if trainer.global_rank == 0:
        save(model_dir)
        resolved = {**asdict(cfg), "precision_resolved": precision, "steps_done": trainer.global_step}
        from rankstack.io import atomic_write

        with atomic_write(model_dir / "rankstack_train.json") as fh:
            json.dump(resolved, fh, indent=2, default=str)
    return FitResult(model_dir, trainer.global_step, wall, resumed,
                     None if final_loss is None else float(final_loss))


def run_trainer(cfg: TrainConfig, module, data, *, callbacks: list | None = None,
                show_progress: bool = True):
    """Fit ``module`` on ``data`` with the one trainer setup: checkpoints every
    ``checkpoint_every`` steps in ``<out_dir>/checkpoints`` (+ ``last.ckpt``, resumed from when
    present), the step audit ``steps.jsonl``, a CSV log in ``<out_dir>/logs``.

    Returns ``(trainer, resumed_from or None, wall seconds, resolved precision)``. Used by the
    student :func:`fit` and by the PE-Rank stages (``rankstack.llm.pe_rank.fit``).
    """
    quiet_lightning()
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=cfg.checkpoint_every, save_last=True,
        save_top_k=-1, filename="step{step}", auto_insert_metric_name=False)
    trainer = L.Trainer(
        **lightning_devices(cfg.accelerator, cfg.devices, cfg.num_nodes, cfg.strategy),
        precision=precision, max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.accumulate,
        callbacks=[*(callbacks or []), checkpoint, _AuditCallback(out / "steps.jsonl"),
                   *([StepProgressBar()] if show_progress else [])],
        logger=L.pytorch.loggers.CSVLogger(out, name="logs"), log_every_n_steps=cfg.log_every,
        enable_progress_bar=show_progress, enable_model_summary=False, max_epochs=-1,
        use_distributed_sampler=False, default_root_dir=out, gradient_clip_val=1.0,
    )
    last = ckpt_dir / "last.ckpt"
    resumed = str(last) if last.exists() else None
    if resumed:
        log.info("resuming from %s", resumed)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resumed)
    return trainer, resumed, time.perf_counter() - start, precision


def steps_for(n_groups: int, cfg: TrainConfig, epochs: float) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_groups`` groups."""
    return max(1, math.ceil(epochs * n_groups / (cfg.batch_size * cfg.accumulate)))


def world_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK") if k in os.environ}
