"""The Lightning modules and batch encoders of the trainable families.

One per family of :data:`FAMILIES`, all driven by :func:`rankstack.train.fit.fit`:

* ``cross-encoder``: an encoder with a 1-logit sequence-classification head, (query, passage)
  pairs encoded by :class:`~rankstack.rerank.tokens.PairEncoder` (what the
  ``cross-encoder`` re-ranker uses).
* ``rankllama``: a decoder LLM with a 1-logit head read at the last real token (RankLLaMA;
  usually with LoRA), inputs rendered exactly as the ``rankllama`` re-ranker renders them
  (``query: {q}</s> document: {d}</s>``, via :class:`~rankstack.rerank.decoder.RankLlamaScorer`).
* ``bi-encoder``: :class:`~rankstack.train.bi_encoder.BiEncoderStudent`, queries and passages
  encoded alone (prefixes, optional EOS) as the ``bi-encoder`` re-ranker encodes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rankstack.errors import ConfigError, require

torch = require("torch", "neural", "training")
L = require("lightning", "train", "training", package="lightning")

FAMILIES = ("cross-encoder", "rankllama", "bi-encoder")


def _torch_inputs(enc, pad_id: int) -> dict[str, Any]:
    from rankstack.rerank.batching import pad_batch

    return pad_batch(enc, np.arange(len(enc)), pad_id).torch()


class PairBatcher:
    """(query, passage) pairs of a GroupBatch -> padded model inputs (cross-encoder, rankllama)."""

    def __init__(self, encode: Callable[[list[str], list[str]], list], pad_id: int) -> None:
        self.encode = encode
        self.pad_id = pad_id

    def __call__(self, gb) -> dict[str, Any]:
        qs, ds = gb.flat_pairs()
        return {"inputs": _torch_inputs(self.encode(qs, ds), self.pad_id)}


class SingleBatcher:
    """Queries and passages of a GroupBatch encoded alone (bi-encoder)."""

    def __init__(self, encoder, pad_id: int, *, query_prefix: str, passage_prefix: str,
                 suffix_ids: list[int]) -> None:
        self.encoder = encoder
        self.pad_id = pad_id
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.suffix_ids = suffix_ids

    def __call__(self, gb) -> dict[str, Any]:
        _, ds = gb.flat_pairs()
        q = self.encoder.encode_single(gb.queries, kind="queries", prefix=self.query_prefix,
                                       suffix_ids=self.suffix_ids)
        d = self.encoder.encode_single(ds, kind="passages", prefix=self.passage_prefix,
                                       suffix_ids=self.suffix_ids)
        return {"query_inputs": _torch_inputs(q, self.pad_id),
                "inputs": _torch_inputs(d, self.pad_id)}


class _Base(L.LightningModule):
    def __init__(self, model, loss_fn: Callable, cfg) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.cfg = cfg

    def configure_optimizers(self):
        from rankstack.train.schedule import adamw_linear_schedule

        return adamw_linear_schedule(self.model.parameters(), self.cfg)

    def _log_loss(self, loss, batch_size: int) -> None:
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        sched = self.lr_schedulers()
        if sched is not None and not isinstance(sched, list):
            self.log("lr", sched.get_last_lr()[0], batch_size=batch_size)


class CrossEncoderModule(_Base):
    """Cross-encoder and RankLLaMA students: one logit per (query, passage) pair."""

    def forward(self, batch: dict[str, Any]):
        """Scores (B, N) of a collated batch; padded positions are 0 (and masked)."""
        flat = self.model(**batch["inputs"]).logits.view(-1).float()
        return batch["groups"].unflatten(flat)

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        scores = self(batch)
        loss = self.loss_fn(scores, batch["groups"].targets, batch["groups"].mask)
        self._log_loss(loss, scores.shape[0])
        return loss


class BiEncoderModule(_Base):
    """Bi-encoder students: query and passage embeddings, :class:`BiEncoderLoss`."""

    def embeddings(self, batch: dict[str, Any]):
        """``(q (B, h), d (B, N, h))``; padded passages are zero vectors (and masked)."""
        gb = batch["groups"]
        q = self.model.encode(batch["query_inputs"])
        flat = self.model.encode(batch["inputs"])
        d = flat.new_zeros((*gb.mask.shape, flat.shape[-1]))
        d[gb.mask.to(flat.device)] = flat
        return q, d

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        gb = batch["groups"]
        q, d = self.embeddings(batch)
        loss = self.loss_fn(q, d, gb.targets, gb.mask)
        self._log_loss(loss, q.shape[0])
        return loss


def build(cfg) -> tuple[Any, Callable, Callable[[Any], Any]]:
    """``(module, batcher, save(out_dir))`` for ``cfg.family``."""
    from rankstack.train.losses import get_loss

    if cfg.family not in FAMILIES:
        raise ConfigError(f"family must be one of {', '.join(FAMILIES)}, not {cfg.family!r}")
    group_loss = get_loss(cfg.loss, **cfg.loss_kwargs)
    lengths = {"rankstack_query_length": cfg.query_length,
               "rankstack_doc_length": cfg.doc_length}
    if cfg.family == "bi-encoder":
        from rankstack.rerank.tokens import PairEncoder
        from rankstack.train.bi_encoder import BiEncoderLoss, load_bi_encoder, save_bi_encoder
        from rankstack.train.student import default_backbone

        student, tok = load_bi_encoder(cfg.backbone or default_backbone(), pooling=cfg.pooling,
                                       normalize=cfg.normalize, lora=cfg.lora, seed=cfg.seed)
        suffix = []
        if cfg.append_eos:
            if tok.eos_token_id is None:
                raise ConfigError("append_eos: the tokenizer has no EOS token")
            suffix = [int(tok.eos_token_id)]
        enc = PairEncoder.from_tokenizer(tok, query_length=cfg.query_length,
                                         doc_length=cfg.doc_length, model_config=student.config)
        batcher = SingleBatcher(enc, tok.pad_token_id, query_prefix=cfg.query_prefix,
                                passage_prefix=cfg.passage_prefix, suffix_ids=suffix)
        loss = BiEncoderLoss(group_loss, temperature=cfg.temperature,
                             in_batch_negatives=cfg.in_batch_negatives,
                             in_batch_weight=cfg.in_batch_weight,
                             is_infonce=cfg.loss in ("infonce", "lce"))
        settings = {"query_prefix": cfg.query_prefix, "passage_prefix": cfg.passage_prefix,
                    "append_eos": cfg.append_eos, "query_length": cfg.query_length,
                    "doc_length": cfg.doc_length}
        module = BiEncoderModule(student, loss, cfg)
        return module, batcher, lambda out: save_bi_encoder(
            module.model, tok, out, settings)
    from rankstack.train.student import load_student, save_student

    model, tok = load_student(cfg.backbone, keep_layers=cfg.keep_layers, lora=cfg.lora,
                              seed=cfg.seed, family=cfg.family)
    if cfg.family == "rankllama":
        from rankstack.rerank.decoder import RankLlamaScorer

        # the re-ranker's own rendering (templates, EOS, budgets) is the training input
        scorer = RankLlamaScorer(model, tok, query_length=cfg.query_length,
                                 doc_length=cfg.doc_length)
        model.train()
        batcher = PairBatcher(scorer._encode, scorer.pad_token_id)
    else:
        from rankstack.rerank.tokens import PairEncoder

        enc = PairEncoder.from_tokenizer(tok, query_length=cfg.query_length,
                                         doc_length=cfg.doc_length, model_config=model.config)
        batcher = PairBatcher(enc.encode_pairs, tok.pad_token_id)
    module = CrossEncoderModule(model, group_loss, cfg)
    return module, batcher, lambda out: save_student(
        module.model, tok, out, lengths, family=cfg.family)
