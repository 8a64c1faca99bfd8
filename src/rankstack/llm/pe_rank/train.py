"""PE-Rank training objectives: (1) alignment of the projector, (2) learning to rank.

The loops are the one Lightning trainer's (:mod:`rankstack.llm.pe_rank.fit`); this module
holds the losses and the training windows.

Stage 1, alignment: the LLM is frozen and only the projector learns, with the LM loss of
reconstructing a passage's text from its single embedding token (``<p> means: <text><eos>``).

Stage 2, learning to rank: at each output position a softmax over the passages not yet emitted
(ListMLE, i.e. the Plackett-Luce likelihood of the target permutation), computed on the prompt
without content and with content, plus ``kl_weight`` x KL(with-content || without-content)
(summed over steps, mean over windows, as the reference's ``kl_div(..., "batchmean")``).
ListMLE is averaged over the output steps as in the reference (``pe_rank/src/modeling/rank_lm/
loss.py``; ``reduction="sum"`` sums them). By default the with-content distribution is a
detached teacher, so the KL term only moves the without-content (inference-time) student;
``kl_detach=False`` lets the gradient through both sides as the reference does.

The passage budgets (``max_passage_tokens``, ``content_tokens``) are the same here and at
inference.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rankstack.errors import ConfigError, InputError, require
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


def _listmle(logps: Sequence[torch.Tensor], examples: Sequence[RankingExample],
             reduction: str = "mean") -> torch.Tensor:
    losses = []
    for lp, ex in zip(logps, examples, strict=True):
        tgt = torch.tensor(ex.target, device=lp.device)
        nll = -lp[torch.arange(len(ex.target), device=lp.device), tgt]
        losses.append(nll.mean() if reduction == "mean" else nll.sum())
    return torch.stack(losses).mean()


def _kl(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], *,
        detach: bool = True) -> torch.Tensor:
    """Sum over steps of KL(teacher || student), over allowed passages; mean over examples."""
    losses = []
    for lt, ls in zip(teacher, student, strict=True):
        allowed = torch.isfinite(lt)
        lt_d = lt.detach() if detach else lt
        zero = torch.zeros_like(ls)
        diff = torch.where(allowed, lt_d - ls, zero)
        losses.append(torch.where(allowed, lt_d.exp() * diff, zero).sum())
    return torch.stack(losses).mean()


def ranking_loss(model: PERankModel, examples: Sequence[RankingExample],
                 embs: Sequence[torch.Tensor], *, kl_weight: float = 0.2,
                 kl_detach: bool = True, reduction: str = "mean"
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """ListMLE without content + ListMLE with content + ``kl_weight`` x KL(with || without)."""
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    projs = [model.project(e) for e in embs]
    lp_plain = _ranking_logprobs(model, examples, projs, with_content=False)
    lp_text = _ranking_logprobs(model, examples, projs, with_content=True)
    l_plain = _listmle(lp_plain, examples, reduction)
    l_text = _listmle(lp_text, examples, reduction)
    kl = _kl(lp_text, lp_plain, detach=kl_detach)
    loss = l_plain + l_text + kl_weight * kl
    return loss, {"loss": loss.item(), "listmle": l_plain.item(),
                  "listmle_content": l_text.item(), "kl": kl.item()}


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
