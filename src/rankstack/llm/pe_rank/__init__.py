"""PE-Rank: listwise re-ranking with passage embeddings as single LLM tokens.

After Liu et al., "Leveraging Passage Embeddings for Efficient Listwise Reranking with Large
Language Models". A frozen encoder (:class:`PassageEmbedder`) embeds each passage; a
:class:`Projector` maps the embedding into the LLM's input-embedding space; the LLM reads one
token per passage and writes the ranking by choosing among those same projected embeddings
(:class:`PERankModel`). :class:`PERankReranker` drives it over sliding windows of a run.
Training: :func:`train_alignment` (stage 1) and :func:`train_ranking` (stage 2) on the one
Lightning trainer (:mod:`rankstack.llm.pe_rank.fit`, also ``rankstack fit`` with
``task: pe-rank``); imported lazily, so inference does not need lightning.

Importing this package needs torch and transformers (``pip install 'rankstack[neural]'``).
"""

from rankstack.llm.pe_rank.embedder import PassageEmbedder, default_embedder_path
from rankstack.llm.pe_rank.model import PERankConfig, PERankModel, Prompt, load_projector_files
from rankstack.llm.pe_rank.projector import Projector
from rankstack.llm.pe_rank.reranker import PERankReranker, window_token_counts
from rankstack.llm.pe_rank.train import (
    RankingExample,
    alignment_loss,
    examples_from_run,
    ranking_loss,
)

__all__ = [
    "PERankConfig",
    "PERankModel",
    "PERankReranker",
    "PassageEmbedder",
    "Projector",
    "Prompt",
    "RankingExample",
    "alignment_loss",
    "default_embedder_path",
    "examples_from_run",
    "fit_stage",
    "load_projector_files",
    "ranking_loss",
    "train_alignment",
    "train_ranking",
    "window_token_counts",
]


def __getattr__(name: str):
    if name in ("train_alignment", "train_ranking", "fit_stage"):
        from rankstack.llm.pe_rank import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'rankstack.llm.pe_rank' has no attribute {name!r}")
