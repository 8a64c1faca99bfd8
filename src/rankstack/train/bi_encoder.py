"""Bi-encoder students: a Hugging Face ``AutoModel`` + pooling, trained by the one trainer.

Pooling ``cls`` / ``mean`` / ``last_token`` (the last real token, RepLLaMA-style for decoder
LLMs, with ``append_eos``), optional L2 normalisation (cosine) and a temperature that divides
the scores inside the loss only (rankings do not depend on it). Text prefixes
(``query_prefix`` / ``passage_prefix``) are part of the model and saved with it.

Losses: ``infonce`` with ``in_batch_negatives`` scores every query against every passage of
the micro-batch (its own group's passages are its hard negatives, the other groups' passages
in-batch negatives; the positive is its group's first passage: the teacher's top-1, or the
relevant one of ``single_relevant`` groups). Every other loss of
:data:`~rankstack.train.losses.LOSSES` (distillation from a teacher's scores or ranks: KL,
ListNet, RankNet, margin-MSE, ADR-MSE, ...) is applied to each query's own group, and
``in_batch_weight`` > 0 adds the in-batch InfoNCE term to it.

:func:`save_bi_encoder` writes a plain HF directory (LoRA merged) with a
sentence-transformers ``1_Pooling/config.json`` and ``rankstack_family: bi-encoder`` plus the
scoring settings in ``config.json``, so ``rankstack index --dense``, ``retrieve`` and
``rerank`` load it with no extra flags.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, require

torch = require("torch", "neural", "training")

FAMILY = "bi-encoder"
POOLINGS = ("cls", "mean", "last_token")
#: config.json keys holding the scoring settings a saved bi-encoder is loaded with
SETTINGS_KEY = "rankstack_bi_encoder"


def pool_hidden(hidden, attention_mask, how: str):
    """Pool ``(b, s, h)`` over real tokens (right padding) -> ``(b, h)``."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    if how == "last_token":
        last = attention_mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, not {how!r}")


class BiEncoderStudent(torch.nn.Module):
    """``encode(inputs) -> (b, h)`` pooled (and normalised) embeddings."""

    def __init__(self, model, pooling: str = "mean", normalize: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.model = model
        self.pooling = pooling
        self.normalize = normalize

    @property
    def config(self):
        return self.model.config

    def encode(self, inputs: dict[str, Any]):
        hidden = self.model(**inputs).last_hidden_state.float()
        v = pool_hidden(hidden, inputs["attention_mask"], self.pooling)
        return torch.nn.functional.normalize(v, dim=-1) if self.normalize else v


def in_batch_scores(q, d, mask):
    """Scores of each query against every passage of the batch, own group first.

    ``q``: (B, h); ``d``: (B, N, h); ``mask``: (B, N) real passages. Returns ``(scores, m)``
    of shape (B, B*N): row ``b`` holds its own N passages, then the other groups' passages in
    batch order; ``m`` masks padding. Column 0 is the positive of each row.
    """
    b, n, h = d.shape
    flat = d.reshape(b * n, h)
    fmask = mask.reshape(b * n)
    full = q @ flat.T  # (B, B*N)
    order = []
    for i in range(b):
        own = list(range(i * n, (i + 1) * n))
        order.append(own + [j for j in range(b * n) if not i * n <= j < (i + 1) * n])
    idx = torch.tensor(order, device=q.device)
    return full.gather(1, idx), fmask[idx]


class BiEncoderLoss:
    """The bi-encoder objective (see module doc) over pooled embeddings."""

    def __init__(self, group_loss, *, temperature: float, in_batch_negatives: bool,
                 in_batch_weight: float, is_infonce: bool) -> None:
        from rankstack.train.losses import InfoNCE

        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.group_loss = group_loss
        self.t = temperature
        self.in_batch_negatives = in_batch_negatives
        self.in_batch_weight = in_batch_weight
        self.is_infonce = is_infonce
        self.infonce = InfoNCE(positive="first")

    def __call__(self, q, d, targets, mask):
        """``q`` (B, h), ``d`` (B, N, h), ``targets``/``mask`` (B, N) -> scalar loss."""
        own = torch.einsum("bh,bnh->bn", q, d) / self.t
        if self.is_infonce and self.in_batch_negatives:
            s, m = in_batch_scores(q, d, mask)
            return self.infonce(s / self.t, torch.zeros_like(s), m)
        loss = self.group_loss(own, targets, mask)
        if self.in_batch_weight:
            s, m = in_batch_scores(q, d, mask)
            loss = loss + self.in_batch_weight * self.infonce(s / self.t, torch.zeros_like(s), m)
        return loss


def load_bi_encoder(path: str, *, pooling: str = "mean", normalize: bool = True,
                    lora: dict[str, Any] | None = None, seed: int = 0):
    """``(BiEncoderStudent, tokenizer)`` for training from an HF encoder or decoder."""
    transformers = require("transformers", "neural", "training")
    from rankstack.hf_loading import load_pretrained, load_tokenizer

    torch.manual_seed(seed)
    tok = load_tokenizer(path)
    model = load_pretrained(transformers.AutoModel, path)
    pooler = getattr(model, "pooler", None)
    if pooler is not None:  # BERT's pooler is not used by any pooling here (DDP needs to know)
        pooler.requires_grad_(False)
    if tok.pad_token_id is None:  # decoder LLMs: right padding with any id (masked)
        tok.pad_token = tok.unk_token or tok.eos_token
    if lora:
        peft = require("peft", "train", "LoRA")
        cfg = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, **lora}
        cfg.setdefault("target_modules", "all-linear")
        model = peft.get_peft_model(model, peft.LoraConfig(**cfg))
    model.train()
    return BiEncoderStudent(model, pooling, normalize), tok


def save_bi_encoder(student: BiEncoderStudent, tokenizer, out_dir: str | os.PathLike[str],
                    settings: dict[str, Any]) -> Path:
    """Save a plain HF dir loadable as a ``bi-encoder`` with no extra flags."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = student.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.rankstack_family = FAMILY
    setattr(model.config, SETTINGS_KEY,
            {"similarity": "cosine" if student.normalize else "dot", **settings})
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": int(model.config.hidden_size),
               "pooling_mode_cls_token": student.pooling == "cls",
               "pooling_mode_mean_tokens": student.pooling == "mean",
               "pooling_mode_lasttoken": student.pooling == "last_token"}
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    return out
