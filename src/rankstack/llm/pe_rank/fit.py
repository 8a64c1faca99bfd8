"""PE-Rank training on the one Lightning trainer (:func:`rankstack.train.fit.run_trainer`).

Both stages are a :class:`PERankTask` run by the same trainer, config dialect, checkpoints
and exact resume as ``rankstack fit`` students:

* ``stage: alignment`` - the LLM frozen, only the projector learns (LM loss of restating a
  passage from its single embedding token), on passages of a corpus (``rankstack corpus``).
* ``stage: ranking`` - ListMLE at each output step without and with passage content, plus
  ``kl_weight`` x KL (0.2 as the reference), on windows of a teacher run (``rankstack teach``):
  each window is the teacher's ``TeacherGroupBuilder`` group (``window`` docs) shown in a
  seeded shuffled order, the teacher's order as the target. The projector trains; the LLM
  trains with ``lora`` (peft adapters, merged on save) or ``train_llm: true`` (all weights).

Checkpoints hold only the trainable weights (projector, adapters), not the frozen LLM, so a
checkpoint of the projector stage is a few MB. The final model is ``<out_dir>/model``, the
directory :class:`~rankstack.llm.pe_rank.PERankReranker` loads (``projector_path``), plus
``rankstack_train.json``; with LoRA or ``train_llm`` the trained LLM is in ``model/llm``.
The training curve is ``<out_dir>/logs/version_*/metrics.csv``.

YAML (``rankstack fit --config configs/pe_rank/stage1_alignment.yaml``)::

    task: pe-rank
    out_dir: models/pe_rank/stage1
    max_steps: 300
    batch_size: 8
    lr: 1.0e-3
    pe_rank:
      stage: alignment
      llm: /path/to/smollm2-hf
      embedder: bundled:all-MiniLM-L6-v2
      max_passage_tokens: 128      # encoder budget
      content_tokens: 48           # LLM tokens of text (targets, content prompts)
    data:
      corpus: corpus.jsonl         # stage 1; stage 2: teacher_run + sources (+ window)
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from rankstack.errors import ConfigError, require
from rankstack.llm.pe_rank.embedder import PassageEmbedder
from rankstack.llm.pe_rank.model import PERankModel
from rankstack.llm.pe_rank.train import (
    RankingExample,
    _check_budget,
    _mark_stage,
    alignment_loss,
    ranking_loss,
)
from rankstack.records import Doc

torch = require("torch", "neural", "PE-Rank training")
L = require("lightning", "train", "PE-Rank training", package="lightning")

from rankstack.train.fit import (  # noqa: E402  (needs lightning, checked above)
    FitResult,
    TrainConfig,
    adamw_linear_schedule,
    run_trainer,
    step_loader,
)

log = logging.getLogger("rankstack.llm.pe_rank")

STAGES = ("alignment", "ranking")
#: TrainConfig keys that only mean something for cross-encoder students
STUDENT_ONLY = ("backbone", "keep_layers", "loss", "loss_kwargs", "group_size",
                "query_length", "doc_length")


@dataclass
class PERankDataConfig:
    """The ``data`` section of a PE-Rank training config (validated by its types)."""

    corpus: list[str] = field(default_factory=list)  # JSONL corpora (stage 1: the passages)
    sources: list[str] = field(default_factory=list)  # datasets giving query/passage text
    topics: list[str] = field(default_factory=list)
    teacher_run: str | None = None  # stage 2: a run written by `rankstack teach`
    window: int = 20  # passages per training window
    order: Literal["shuffled", "candidates"] = "shuffled"  # prompt order of a window
    strategy: Literal["top", "top_and_random"] = "top_and_random"
    depth: int | None = None  # teacher positions windows are drawn from (None: all)
    max_docs: int | None = None  # stage 1: use only the first N passages
    seed: int | None = None
    on_missing_doc: Literal["skip_doc", "skip_query"] = "skip_doc"


DATA_KEYS = {f.name for f in fields(PERankDataConfig)}


@dataclass
class PERankStage:
    """The ``pe_rank`` section of a PE-Rank training config."""

    stage: str
    llm: str
    embedder: str | None = None  # None = bundled MiniLM
    #: a saved PE-Rank model dir to start from (stage 2: stage 1's ``<out_dir>/model``)
    init: str | None = None
    max_passage_tokens: int = 128
    content_tokens: int | None = None
    layout: str = "compact"
    temperature: float = 1.0
    normalize_hidden: bool = True
    bos_before_output: bool = False
    kl_weight: float = 0.2
    kl_detach: bool = True
    listmle_reduction: str = "mean"
    train_llm: bool = False
    dtype: str | None = None
    embed_batch_size: int = 32
    #: stop (and save) after this many minutes of training, before max_steps if need be
    max_minutes: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"pe_rank.stage must be one of {', '.join(STAGES)}, "
                              f"not {self.stage!r}")
        if not self.llm:
            raise ConfigError("pe_rank.llm: the causal LM (HF directory or hub id) is required")
        if self.kl_weight < 0:
            raise ConfigError(f"pe_rank.kl_weight must be >= 0, not {self.kl_weight}")
        if self.listmle_reduction not in ("mean", "sum"):
            raise ConfigError(f"pe_rank.listmle_reduction must be 'mean' or 'sum', not "
                              f"{self.listmle_reduction!r}")


# ---------------------------------------------------------------------- data
class DocItems:
    """Stage-1 items: passages, visited in a seeded order per epoch (StepSampler protocol)."""

    def __init__(self, docs: Sequence[Doc], seed: int = 0) -> None:
        self.docs = list(docs)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.docs)

    def epoch_order(self, epoch: int = 0, shuffle: bool = True) -> list[int]:
        order = list(range(len(self.docs)))
        if shuffle:
            random.Random(f"{self.seed}/{epoch}/docs").shuffle(order)
        return order

    def group(self, index: int, epoch: int = 0) -> Doc:
        return self.docs[index]


class RankingWindows:
    """Stage-2 items: a teacher group builder's groups as :class:`RankingExample` windows.

    The target is the teacher's order. The prompt order (``order``): ``shuffled`` - a seeded
    shuffle (seed, epoch, query), so the positions say nothing; ``candidates`` - the order of
    the first-stage runs ``first_stage`` (e.g. BM25), as windows arrive at inference (docs a
    first-stage run lacks go last, in a seeded shuffle).
    """

    ORDERS = ("shuffled", "candidates")

    def __init__(self, builder, docs: Mapping[str, Doc], seed: int = 0, *,
                 order: str = "shuffled", first_stage: Sequence[Any] = ()) -> None:
        if order not in self.ORDERS:
            raise ConfigError(f"window order must be one of {', '.join(self.ORDERS)}, "
                              f"not {order!r}")
        if order == "candidates" and not first_stage:
            raise ConfigError("order 'candidates' needs first-stage runs (data.sources)")
        self.builder = builder
        self.docs = docs
        self.seed = seed
        self.order = order
        self._ranks: dict[str, dict[str, int]] = {}
        for run in first_stage:
            for qid, ranking in run.items():
                self._ranks.setdefault(qid, {d: i for i, d in enumerate(ranking.doc_ids)})

    def __len__(self) -> int:
        return len(self.builder)

    def epoch_order(self, epoch: int = 0, shuffle: bool = True) -> list[int]:
        return self.builder.epoch_order(epoch, shuffle)

    def group(self, index: int, epoch: int = 0) -> RankingExample:
        g = self.builder.group(index, epoch)
        best_first = sorted(range(len(g.doc_ids)), key=lambda i: (-g.targets[i], i))
        shown = list(range(len(g.doc_ids)))
        random.Random(f"{self.seed}/{epoch}/{g.query_id}/shown").shuffle(shown)
        if self.order == "candidates":  # stable: unranked docs keep their shuffled order
            ranks = self._ranks.get(g.query_id, {})
            shown.sort(key=lambda i: ranks.get(g.doc_ids[i], len(ranks)))
        pos = {i: k for k, i in enumerate(shown)}
        docs = [self._doc(g.doc_ids[i], g.docs[i]) for i in shown]
        ex = RankingExample(g.query, docs, [pos[i] for i in best_first])
        ex.query_id = g.query_id  # for the step audit
        return ex

    def _doc(self, doc_id: str, text: str) -> Doc:
        d = self.docs.get(doc_id)
        return d if isinstance(d, Doc) else Doc(doc_id, text)


class WallClockStop(L.Callback):
    """Ask the trainer to stop once ``minutes`` have passed (the model is saved as usual)."""

    def __init__(self, minutes: float) -> None:
        import time

        self.deadline = time.monotonic() + 60.0 * minutes

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        if time.monotonic() > self.deadline:
            log.info("max_minutes reached at step %d: stopping", trainer.global_step)
            trainer.should_stop = True


class PERankData(L.LightningDataModule):
    def __init__(self, items, cfg: TrainConfig) -> None:
        super().__init__()
        self.items = items
        self.cfg = cfg

    @staticmethod
    def collate(batch: list) -> dict[str, Any]:
        keys = [[getattr(x, "query_id", None) or getattr(x, "id", ""), 1] for x in batch]
        return {"items": batch, "group_keys": keys}

    def train_dataloader(self):
        return step_loader(self.trainer, self.items, self.cfg, self.collate)


# ---------------------------------------------------------------------- module
class PERankTask(L.LightningModule):
    """One PE-Rank stage as a LightningModule; checkpoints carry only trainable weights."""

    def __init__(self, model: PERankModel, embedder: PassageEmbedder, cfg: TrainConfig,
                 stage: PERankStage) -> None:
        super().__init__()
        self.model = model
        self.embedder = embedder
        self.cfg = cfg
        self.stage = stage
        self.strict_loading = False  # frozen LLM weights are not in the checkpoints

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # records (frozen dataclasses), tensorised on the model's device per step

    def _embed(self, docs: Sequence[Doc]):
        # the frozen encoder runs outside autocast: the same fp32 vectors as at inference
        with torch.autocast(self.device.type, enabled=False):
            return self.embedder.encode_docs(docs)

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        items = batch["items"]
        if self.stage.stage == "alignment":
            loss = alignment_loss(self.model, self._embed(items), [d.full_text for d in items])
            parts = {}
        else:
            embs = [self._embed(ex.docs) for ex in items]
            loss, parts = ranking_loss(self.model, items, embs, kl_weight=self.stage.kl_weight,
                                       kl_detach=self.stage.kl_detach,
                                       reduction=self.stage.listmle_reduction)
        self.log("loss", loss, prog_bar=True, batch_size=len(items))
        for k, v in parts.items():
            if k != "loss":
                self.log(k, v, batch_size=len(items))
        return loss

    def configure_optimizers(self):
        return adamw_linear_schedule(self.model.parameters(), self.cfg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if k in trainable}


# ---------------------------------------------------------------------- building
def build_model(stage: PERankStage, embedder: PassageEmbedder, *, device: str = "cpu",
                seed: int = 0) -> PERankModel:
    """The PE-Rank model a stage starts from: ``init`` (a saved model dir) or a fresh projector."""
    if stage.init:
        init = Path(stage.init)
        llm = str(init / "llm") if (init / "llm").is_dir() else stage.llm
        model = PERankModel.from_pretrained(llm, init, d_emb=embedder.dim, device=device,
                                            dtype=stage.dtype)
        if stage.content_tokens is not None:
            model.config.content_tokens = stage.content_tokens
        for key in ("max_passage_tokens", "layout", "normalize_hidden", "bos_before_output",
                    "temperature"):
            if getattr(model.config, key) != getattr(stage, key):
                raise ConfigError(f"pe_rank.{key}={getattr(stage, key)!r} but the model at "
                                  f"{init} was trained with {getattr(model.config, key)!r}")
        model.config.llm = stage.llm
        return model
    return PERankModel.from_pretrained(
        stage.llm, d_emb=embedder.dim, device=device, dtype=stage.dtype, seed=seed,
        max_passage_tokens=stage.max_passage_tokens, content_tokens=stage.content_tokens,
        layout=stage.layout, temperature=stage.temperature,
        normalize_hidden=stage.normalize_hidden, bos_before_output=stage.bos_before_output,
        embedder=embedder.name)


def _prepare(model: PERankModel, embedder: PassageEmbedder, cfg: TrainConfig,
             stage: PERankStage) -> None:
    """Freeze/unfreeze for the stage; wrap the LLM in LoRA adapters if asked."""
    _check_budget(model, embedder)
    model.lm.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage.stage == "ranking" and cfg.lora:
        peft = require("peft", "train", "LoRA on the PE-Rank LLM")
        lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                "target_modules": ["q_proj", "v_proj"], **cfg.lora}
        model.lm = peft.get_peft_model(model.lm, peft.LoraConfig(task_type="CAUSAL_LM", **lora))
    elif stage.stage == "ranking" and stage.train_llm:
        model.lm.requires_grad_(True)
    elif stage.stage == "alignment" and (cfg.lora or stage.train_llm):
        raise ConfigError("the alignment stage trains the projector only (no lora/train_llm)")
    model.train()


def fit_stage(cfg: TrainConfig, stage: PERankStage, items, *, model: PERankModel | None = None,
              embedder: PassageEmbedder | None = None, callbacks: list | None = None,
              show_progress: bool = True, save: bool = True) -> tuple[FitResult, PERankModel]:
    """Train one stage on ``items`` (:class:`DocItems` or :class:`RankingWindows`).

    ``model``/``embedder`` may be passed ready (they are trained in place); otherwise they
    are built from ``stage``. Resumes from ``<out_dir>/checkpoints/last.ckpt`` if present.
    """
    stage.validate()
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if len(items) == 0:
        raise ConfigError("no training items for the PE-Rank stage")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if embedder is None:
        embedder = PassageEmbedder(stage.embedder, max_length=stage.max_passage_tokens,
                                   batch_size=stage.embed_batch_size)
    if model is None:
        model = build_model(stage, embedder, seed=cfg.seed)
    _prepare(model, embedder, cfg, stage)
    task = PERankTask(model, embedder, cfg, stage)
    if stage.max_minutes is not None:
        callbacks = [*(callbacks or []), WallClockStop(stage.max_minutes)]
    try:
        trainer, resumed, wall, precision = run_trainer(
            cfg, task, PERankData(items, cfg), callbacks=callbacks, show_progress=show_progress)
    finally:
        model.eval()
    final = trainer.callback_metrics.get("loss")
    _mark_stage(model, stage.stage)
    if hasattr(model.lm, "merge_and_unload"):  # LoRA: fold the adapters into the weights
        model.lm = model.lm.merge_and_unload()
    model.lm.requires_grad_(False)
    model_dir = Path(cfg.out_dir) / "model"
    if save and trainer.global_rank == 0:
        model.save(model_dir, save_llm=bool(cfg.lora) or stage.train_llm)
        from rankstack.io import atomic_write

        resolved = {"task": "pe-rank", **asdict(cfg), "pe_rank": asdict(stage),
                    "precision_resolved": precision, "steps_done": trainer.global_step,
                    "items": len(items)}
        with atomic_write(model_dir / "rankstack_train.json") as fh:
            json.dump(resolved, fh, indent=2, default=str)
    result = FitResult(model_dir, trainer.global_step, wall, resumed,
                       None if final is None else float(final))
    return result, model


# ---------------------------------------------------------------------- YAML
def load_items(stage: PERankStage, data: Mapping[str, Any], seed: int):
    """Training items of a stage from the ``data`` section (corpus / teacher run)."""
    unknown = set(data) - DATA_KEYS
    if unknown:
        raise ConfigError(f"unknown pe-rank data keys: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(DATA_KEYS))})")
    from rankstack.sources import load_sources

    corpus = data.get("corpus", [])
    corpus = [corpus] if isinstance(corpus, str) else list(corpus)
    src = load_sources(data.get("sources", []), topics=data.get("topics", []), corpus=corpus)
    dseed = int(data.get("seed", seed))
    if stage.stage == "alignment":
        docs = [d for d in src.docs.values() if d.full_text.strip()]
        skipped = len(src.docs) - len(docs)
        if skipped:
            log.warning("alignment: %d passage(s) with empty text skipped", skipped)
        max_docs = data.get("max_docs")
        if max_docs is not None:
            docs = docs[:int(max_docs)]
        return DocItems(docs, dseed)
    if not data.get("teacher_run"):
        raise ConfigError("data.teacher_run is required for the ranking stage "
                          "(a run written by `rankstack teach`)")
    from rankstack.io import read_run
    from rankstack.train.data import TeacherGroupBuilder

    builder = TeacherGroupBuilder(
        src.queries, src.docs, read_run(data["teacher_run"]), n_docs=int(data.get("window", 20)),
        strategy=data.get("strategy", "top_and_random"), targets="rank",
        depth=data.get("depth"), seed=dseed,
        on_missing_doc=data.get("on_missing_doc", "skip_doc"))
    log.info("ranking windows: %s", builder.stats.summary())
    return RankingWindows(builder, src.docs, dseed, order=data.get("order", "shuffled"),
                          first_stage=src.runs)


def validate_config(data: Mapping[str, Any], origin: str = "config",
                    lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Check one YAML mapping of the ``task: pe-rank`` dialect (types, unknown keys; errors
    name the file, line and key): trainer keys, ``pe_rank`` and ``data`` sections."""
    from rankstack.schema import from_dataclass

    lines = lines or {}
    top = dict(data)
    task = top.pop("task", "pe-rank")
    if task != "pe-rank":
        raise ConfigError(f"{origin}: task {task!r} mixed with a pe-rank config")
    sections = {"pe_rank": from_dataclass(PERankStage, "the 'pe_rank' section",
                                          exclude=("extra",)),
                "data": from_dataclass(PERankDataConfig, "the 'data' section of a pe-rank "
                                                         "config")}
    out: dict[str, Any] = {"task": "pe-rank"}
    for name, schema in sections.items():
        section = top.pop(name, None)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{origin}:{lines.get(name, '?')}: key {name!r}: expected a "
                              f"mapping, got {section!r}")
        out[name] = schema.validate(section, origin, {}, prefix=f"{name}.")
    trainer = from_dataclass(TrainConfig, "'rankstack fit' (task: pe-rank)",
                             exclude=STUDENT_ONLY)
    out.update(trainer.validate(top, origin, lines))
    return out


def split_config(cfg: dict[str, Any]) -> tuple[TrainConfig, PERankStage, dict[str, Any]]:
    """(trainer config, stage config, data section) from a resolved ``task: pe-rank`` YAML."""
    cfg = dict(cfg)
    cfg.pop("task", None)
    pe = cfg.pop("pe_rank", None)
    data = cfg.pop("data", None)
    if not isinstance(pe, dict):
        raise ConfigError("task pe-rank: missing 'pe_rank' section (stage, llm, ...)")
    if not isinstance(data, dict):
        raise ConfigError("task pe-rank: missing 'data' section")
    bad = [k for k in STUDENT_ONLY if k in cfg]
    if bad:
        raise ConfigError(f"task pe-rank: {', '.join(bad)} are cross-encoder student keys")
    known = {f.name for f in fields(TrainConfig)} - set(STUDENT_ONLY)
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"task pe-rank: unknown keys {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(known))})")
    pknown = {f.name for f in fields(PERankStage)} - {"extra"}
    punknown = set(pe) - pknown
    if punknown:
        raise ConfigError(f"pe_rank: unknown keys {', '.join(sorted(punknown))} "
                          f"(known: {', '.join(sorted(pknown))})")
    tc = TrainConfig(**cfg)
    stage = PERankStage(**pe)
    stage.validate()
    return tc, stage, data


def run_config(cfg: dict[str, Any], *, show_progress: bool = True) -> FitResult:
    """Run the PE-Rank stage of a resolved config mapping (``rankstack fit`` with
    ``task: pe-rank``)."""
    tc, stage, data = split_config(cfg)
    items = load_items(stage, data, tc.seed)
    print(f"PE-Rank {stage.stage}: {len(items)} training items")
    result, _ = fit_stage(tc, stage, items, show_progress=show_progress)
    return result


# ---------------------------------------------------------------------- Python API
def _api_config(out_dir, *, max_steps: int, batch_size: int, lr: float, seed: int,
                checkpoint_every: int, lora: dict | None = None) -> TrainConfig:
    return TrainConfig(out_dir=str(out_dir), max_steps=max_steps, batch_size=batch_size,
                       lr=lr, seed=seed, checkpoint_every=checkpoint_every, warmup_ratio=0.0,
                       weight_decay=0.0, precision="32-true", log_every=1, lora=lora)


def _stage_of(model: PERankModel, name: str, **kw: Any) -> PERankStage:
    c = model.config
    return PERankStage(stage=name, llm=c.llm, max_passage_tokens=c.max_passage_tokens,
                       content_tokens=c.content_tokens, layout=c.layout,
                       temperature=c.temperature, normalize_hidden=c.normalize_hidden,
                       bos_before_output=c.bos_before_output, **kw)


def train_alignment(model: PERankModel, embedder: PassageEmbedder, docs: Sequence[Doc], *,
                    out_dir, max_steps: int, batch_size: int = 8, lr: float = 1e-3,
                    seed: int = 0, checkpoint_every: int = 100,
                    show_progress: bool = False) -> FitResult:
    """Stage 1 on ``docs`` through the trainer (in place on ``model``); see :func:`fit_stage`."""
    cfg = _api_config(out_dir, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed,
                      checkpoint_every=checkpoint_every)
    return fit_stage(cfg, _stage_of(model, "alignment"), DocItems(docs, seed), model=model,
                     embedder=embedder, show_progress=show_progress)[0]


class _ExampleItems:
    def __init__(self, examples: Sequence[RankingExample], seed: int) -> None:
        self.examples = list(examples)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_order(self, epoch: int = 0, shuffle: bool = True) -> list[int]:
        return DocItems(self.examples, self.seed).epoch_order(epoch, shuffle)

    def group(self, index: int, epoch: int = 0) -> RankingExample:
        return self.examples[index]


def train_ranking(model: PERankModel, embedder: PassageEmbedder,
                  examples: Sequence[RankingExample], *, out_dir, max_steps: int,
                  batch_size: int = 2, lr: float = 1e-4, kl_weight: float = 0.2,
                  kl_detach: bool = True, train_llm: bool = False, lora: dict | None = None,
                  seed: int = 0, checkpoint_every: int = 100,
                  show_progress: bool = False) -> FitResult:
    """Stage 2 on ready windows through the trainer (in place on ``model``)."""
    cfg = _api_config(out_dir, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed,
                      checkpoint_every=checkpoint_every, lora=lora)
    stage = _stage_of(model, "ranking", kl_weight=kl_weight, kl_detach=kl_detach,
                      train_llm=train_llm)
    return fit_stage(cfg, stage, _ExampleItems(examples, seed), model=model, embedder=embedder,
                     show_progress=show_progress)[0]


def training_curve(out_dir) -> list[dict[str, float]]:
    """Rows of the CSV training log(s) under ``<out_dir>/logs`` (step, loss, parts)."""
    import csv

    rows: list[dict[str, float]] = []
    for path in sorted(Path(out_dir).glob("logs/version_*/metrics.csv")):
        with open(path, encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows
