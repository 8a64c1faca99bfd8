"""PE-Rank training: (1) alignment of the projector, (2) learning to rank.

Stage 1, alignment: the LLM is frozen and only the projector learns, with the LM loss of
reconstructing a passage's text from its single embedding token (``<p> means: <text><eos>``).

Stage 2, learning to rank: at each output position a softmax over the passages not yet emitted
(ListMLE, i.e. the Plackett-Luce likelihood of the target permutation), computed on the prompt
without content and with content, plus ``kl_weight`` x KL(with-content || without-content) per
position. The with-content distribution is the teacher and is detached, so the KL term only
moves the without-content (inference-time) student. The projector always trains; the LLM
trains only with ``train_llm=True``. The encoder is frozen throughout (embeddings are
precomputed and cached by doc id).

The passage budget (``config.max_passage_tokens``) is the same here and at inference.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rankstack.errors import ConfigError, InputError, require
from rankstack.io import atomic_write
from rankstack.llm.pe_rank.embedder import PassageEmbedder
from rankstack.llm.pe_rank.model import SLOT, PERankModel
from rankstack.records import Doc, Query, Run

torch = require("torch", "neural", "PE-Rank")
F = torch.nn.functional

log = logging.getLogger("rankstack.llm.pe_rank")

IGNORE = -100


@dataclass
class RankingExample:
    """One training window: passages in prompt order and the target order (indices, best first)."""

    query: str
    docs: list[Doc]
    target: list[int]

    def __post_init__(self) -> None:
        if sorted(self.target) != list(range(len(self.docs))):
            raise InputError(f"target {self.target} is not a permutation of "
                             f"0..{len(self.docs) - 1}", field="target")


# ---------------------------------------------------------------------- stage 1
def alignment_loss(model: PERankModel, emb: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Mean LM loss of generating each text (+EOS) after ``<its embedding token> means: ``."""
    if len(texts) != emb.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings for {len(texts)} texts")
    proj = model.project(emb)
    head = model._head()
    cue = model._piece(" means: ")
    seqs, labels = [], []
    for i, text in enumerate(texts):
        target = model._content_ids(text) + [model.eos_token_id]
        ids = head + [SLOT] + cue + target
        seqs.append(model.embed_sequence(ids, proj[i:i + 1]))
        labels.append([IGNORE] * (len(ids) - len(target)) + target)
    hidden, mask = model.hidden_states(seqs)
    lab = torch.full(mask.shape, IGNORE, dtype=torch.long, device=model.device)
    for i, row in enumerate(labels):
        lab[i, :len(row)] = torch.tensor(row, device=model.device)
    # position t predicts token t+1; only positions whose next token is a target count
    next_lab = lab[:, 1:]
    keep = next_lab != IGNORE
    logits = model.lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), next_lab[keep])


# ---------------------------------------------------------------------- stage 2
def _ranking_logprobs(model: PERankModel, examples: Sequence[RankingExample],
                      projs: Sequence[torch.Tensor], with_content: bool) -> list[torch.Tensor]:
    """Per example, ``(n, n)`` log-probabilities: row t = step t over the window's passages,
    already-emitted passages (target[:t]) at -inf."""
    seqs, qpos = [], []
    for ex, proj in zip(examples, projs, strict=True):
        n = len(ex.docs)
        contents = [d.full_text for d in ex.docs] if with_content else None
        prompt = model.build_prompt(ex.query, n, contents)
        ids = prompt.ids + [SLOT] * (n - 1)  # teacher forcing: target passages as inputs
        vecs = torch.cat([proj[prompt.slot_docs], proj[ex.target[:n - 1]]])
        seqs.append(model.embed_sequence(ids, vecs))
        start = len(prompt) - 1
        qpos.append(list(range(start, start + n)))
    hidden, _ = model.hidden_states(seqs)
    out = []
    for i, (ex, proj) in enumerate(zip(examples, projs, strict=True)):
        n = len(ex.docs)
        logits = model.passage_logits(hidden[i, qpos[i]], proj)  # (n steps, n passages)
        emitted = torch.zeros(n, n, dtype=torch.bool, device=logits.device)
        for t in range(1, n):
            emitted[t, ex.target[:t]] = True
        out.append(torch.log_softmax(logits.masked_fill(emitted, float("-inf")), dim=-1))
    return out


def _listmle(logps: Sequence[torch.Tensor], examples: Sequence[RankingExample]) -> torch.Tensor:
    losses = []
    for lp, ex in zip(logps, examples, strict=True):
        tgt = torch.tensor(ex.target, device=lp.device)
        losses.append(-lp[torch.arange(len(ex.target), device=lp.device), tgt].sum())
    return torch.stack(losses).mean()


def _kl(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over steps of KL(teacher || student), over allowed passages; mean over examples."""
    losses = []
    for lt, ls in zip(teacher, student, strict=True):
        allowed = torch.isfinite(lt)
        lt_d = lt.detach()
        diff = torch.where(allowed, lt_d - ls, torch.zeros_like(ls))
        losses.append((lt_d.exp() * diff).sum())
    return torch.stack(losses).mean()


def ranking_loss(model: PERankModel, examples: Sequence[RankingExample],
                 embs: Sequence[torch.Tensor], *, kl_weight: float = 0.2
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """ListMLE without content + ListMLE with content + ``kl_weight`` x KL(with || without)."""
    projs = [model.project(e) for e in embs]
    lp_plain = _ranking_logprobs(model, examples, projs, with_content=False)
    lp_text = _ranking_logprobs(model, examples, projs, with_content=True)
    l_plain, l_text = _listmle(lp_plain, examples), _listmle(lp_text, examples)
    kl = _kl(lp_text, lp_plain)
    loss = l_plain + l_text + kl_weight * kl
    return loss, {"loss": loss.item(), "listmle": l_plain.item(),
                  "listmle_content": l_text.item(), "kl": kl.item()}


# ---------------------------------------------------------------------- loops
def _optimizer(params, lr: float):
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train")
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _progress(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show)


def _run_loop(model: PERankModel, items: list, *, stage: str, step_fn, params: list,
              lr: float, epochs: int, batch_size: int, seed: int, max_steps: int | None,
              checkpoint_dir: str | os.PathLike[str] | None, save_every: int,
              save_llm: bool, progress: bool) -> list:
    """Shuffled mini-batch loop with optional atomic checkpoints and exact resume.

    The batch order is a function of ``seed`` only, so a resumed run skips the batches
    already done and continues exactly where the checkpoint left off.
    """
    if batch_size < 1 or epochs < 1:
        raise ConfigError(f"batch_size and epochs must be >= 1 (got {batch_size}, {epochs})")
    if save_every < 1:
        raise ConfigError(f"save_every must be >= 1, not {save_every}")
    opt = _optimizer(params, lr)
    steps_per_epoch = -(-len(items) // batch_size)
    total = steps_per_epoch * epochs
    if max_steps is not None:
        total = min(total, max_steps)
    job = {"stage": stage, "items": len(items), "batch_size": batch_size, "epochs": epochs,
           "seed": seed, "lr": lr}
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{stage}.ckpt"
    history: list = []
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=model.device, weights_only=False)
        if state["job"] != job:
            raise ConfigError(f"{ckpt} belongs to another job {state['job']} (this one: {job});"
                              f" use another checkpoint_dir")
        model.projector.load_state_dict(state["projector"])
        if state.get("lm") is not None:
            model.lm.load_state_dict(state["lm"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        log.info("%s: resumed from %s at step %d", stage, ckpt, len(history))

    def save() -> None:
        state = {"job": job, "projector": model.projector.state_dict(),
                 "lm": model.lm.state_dict() if save_llm else None,
                 "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
                 "history": history}
        with atomic_write(ckpt, "wb") as fh:
            torch.save(state, fh)

    rng = random.Random(seed)
    step = 0
    with _progress(total, f"PE-Rank {stage}", progress) as bar:
        bar.update(min(len(history), total))
        for _ in range(epochs):
            order = items[:]
            rng.shuffle(order)
            for i in range(0, len(order), batch_size):
                if step >= total:
                    break
                step += 1
                if step <= len(history):
                    continue  # done before the checkpoint
                loss, record = step_fn(order[i:i + batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
                history.append(record)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if ckpt is not None and (step % save_every == 0 or step == total):
                    save()
    return history


def train_alignment(model: PERankModel, embedder: PassageEmbedder, docs: Sequence[Doc], *,
                    epochs: int = 1, batch_size: int = 8, lr: float = 1e-3, seed: int = 0,
                    max_steps: int | None = None, checkpoint_dir: str | None = None,
                    save_every: int = 100, progress: bool = True) -> list[float]:
    """Stage 1 on ``docs``: LLM frozen, projector trained. Returns the loss of each step.

    With ``checkpoint_dir`` the state is saved every ``save_every`` steps and a re-run with
    the same arguments resumes from it.
    """
    _check_budget(model, embedder)
    model.lm.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.projector.train()

    def step(batch: list[Doc]):
        loss = alignment_loss(model, embedder.encode_docs(batch), [d.full_text for d in batch])
        return loss, loss.item()

    try:
        losses = _run_loop(model, list(docs), stage="alignment", step_fn=step,
                           params=list(model.projector.parameters()), lr=lr, epochs=epochs,
                           batch_size=batch_size, seed=seed, max_steps=max_steps,
                           checkpoint_dir=checkpoint_dir, save_every=save_every,
                           save_llm=False, progress=progress)
    finally:
        model.projector.eval()
    _mark_stage(model, "alignment")
    return losses


def train_ranking(model: PERankModel, embedder: PassageEmbedder,
                  examples: Sequence[RankingExample], *, epochs: int = 1, batch_size: int = 2,
                  lr: float = 1e-4, kl_weight: float = 0.2, train_llm: bool = False,
                  seed: int = 0, max_steps: int | None = None,
                  checkpoint_dir: str | None = None, save_every: int = 100,
                  progress: bool = True) -> list[dict[str, float]]:
    """Stage 2 on ranking examples. Returns the loss parts of each step.

    ``train_llm`` also fine-tunes the LLM (all weights); save it with
    ``model.save(path, save_llm=True)``. Checkpoints as in :func:`train_alignment`.
    """
    _check_budget(model, embedder)
    model.lm.requires_grad_(train_llm)
    model.projector.requires_grad_(True)
    model.train()
    params = list(model.projector.parameters()) + (list(model.lm.parameters()) if train_llm
                                                    else [])

    def step(batch: list[RankingExample]):
        embs = [embedder.encode_docs(ex.docs) for ex in batch]
        return ranking_loss(model, batch, embs, kl_weight=kl_weight)

    try:
        history = _run_loop(model, list(examples), stage="ranking", step_fn=step, params=params,
                            lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                            max_steps=max_steps, checkpoint_dir=checkpoint_dir,
                            save_every=save_every, save_llm=train_llm, progress=progress)
    finally:
        model.eval()
        model.lm.requires_grad_(False)
    _mark_stage(model, "ranking")
    return history


def examples_from_run(teacher: Run, queries: dict[str, Query], docs: dict[str, Doc], *,
                      window: int = 20, seed: int = 0) -> list[RankingExample]:
    """Training windows from a teacher run: its top-``window`` docs, shown in a shuffled order,
    with the teacher's order as the target. Queries/docs missing from the inputs raise."""
    rng = random.Random(seed)
    out = []
    for qid, ranking in teacher.rankings.items():
        if qid not in queries:
            raise InputError(f"query {qid!r} of the teacher run has no text", field="query_id")
        ids = ranking.doc_ids[:window]
        if len(ids) < 2:
            continue  # nothing to rank; counted below
        missing = [d for d in ids if d not in docs]
        if missing:
            raise InputError(f"doc {missing[0]!r} of query {qid!r} is not in the corpus",
                             field="doc_id")
        shown = ids[:]
        rng.shuffle(shown)
        pos = {d: i for i, d in enumerate(shown)}
        out.append(RankingExample(queries[qid].text, [docs[d] for d in shown],
                                  [pos[d] for d in ids]))
    skipped = len(teacher.rankings) - len(out)
    if skipped:
        log.warning("examples_from_run: %d query(ies) with < 2 candidates skipped", skipped)
    return out


def _check_budget(model: PERankModel, embedder: PassageEmbedder) -> None:
    if embedder.max_length != model.config.max_passage_tokens:
        raise ConfigError(f"embedder max_length {embedder.max_length} != the model's passage "
                          f"budget max_passage_tokens {model.config.max_passage_tokens}")
    if embedder.dim != model.config.d_emb:
        raise ConfigError(f"embedder dimension {embedder.dim} != projector input "
                          f"{model.config.d_emb}")
    if not model.config.embedder:
        model.config.embedder = embedder.name


def _mark_stage(model: PERankModel, stage: str) -> None:
    stages = list(model.config.stages or [])
    if stage not in stages:
        stages.append(stage)
    model.config.stages = stages
