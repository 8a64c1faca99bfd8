"""Pairwise losses: a query's documents are compared two at a time."""

from __future__ import annotations

from typing import Literal

import torch

from rankstack.errors import InputError
from rankstack.train.losses._base import (
    RankingLoss,
    blank_padding,
    check_choice,
    check_mask,
    check_positive,
    check_scores,
    check_targets,
    zero_loss,
)

PairWeight = Literal["none", "target_diff"]


def ranknet_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                 sigma: float = 1.0, weight: PairWeight = "none") -> torch.Tensor:
    """RankNet on validated (B, N) tensors; see :class:`RankNet` for the formula."""
    # [b, i, j]: pair (i, j) counts when both are real documents and t_i > t_j
    pairs = (targets[:, :, None] > targets[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    n_pairs = int(pairs.sum())
    if n_pairs == 0:
        return zero_loss(scores)
    diff = scores[:, :, None] - scores[:, None, :]
    # -log sigmoid(sigma * (s_i - s_j)) == softplus(-sigma * (s_i - s_j)), numerically stable
    per_pair = torch.nn.functional.softplus(-sigma * diff)
    if weight == "target_diff":
        per_pair = per_pair * (targets[:, :, None] - targets[:, None, :]).abs()
    return torch.where(pairs, per_pair, torch.zeros_like(per_pair)).sum() / n_pairs


class RankNet(RankingLoss):
    r"""RankNet: logistic loss over every ordered pair whose targets differ.

    .. math::

        \ell = \frac{1}{|P|} \sum_{(q,i,j) \in P} w_{ij}\,
               \log\big(1 + e^{-\sigma (s_i - s_j)}\big),
        \qquad P = \{(q, i, j) : t_i > t_j,\ i, j \text{ unmasked}\}

    averaged over all such pairs of the batch (as Rank-DistiLLM / lightning-ir). Pairs with
    equal targets are skipped. ``weight="none"``: :math:`w_{ij} = 1`; ``"target_diff"``:
    :math:`w_{ij} = |t_i - t_j|` (pairs far apart in the target order count more). A batch
    without any pair gives a graph-connected 0.

    Args:
        sigma: steepness :math:`\sigma` of the logistic (> 0).
        weight: pair weighting, ``"none"`` or ``"target_diff"``.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | higher-is-better relevance: qrels grades, teacher|
        |         |         |       | scores, or ``targets_from_ranks(rank, depth)``   |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding (never in a pair)      |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.
        - Schlatt et al., "A Systematic Investigation of Distilling Large Language Models into
          Cross-Encoders for Passage Re-ranking" (Rank-DistiLLM), 2024.
          https://arxiv.org/abs/2405.07920
    """

    name = "ranknet"
    input_kind = "pairwise"

    def __init__(self, sigma: float = 1.0, weight: PairWeight = "none") -> None:
        super().__init__()
        self.sigma = check_positive("sigma", sigma, type(self).__name__)
        self.weight = check_choice("weight", weight, ("none", "target_diff"),
                                   type(self).__name__)

    def _hparams(self) -> dict[str, object]:
        return {"sigma": self.sigma, "weight": self.weight}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        owner = type(self).__name__
        scores = check_scores(owner, scores, "(B, N)", (2,))
        mask = check_mask(owner, mask, scores, "(B, N)")
        targets = check_targets(owner, targets, scores, "(B, N)", mask=mask)
        return ranknet_loss(blank_padding(scores, mask), targets, mask, self.sigma,
                            self.weight)  # type: ignore[arg-type]


class MarginMSE(RankingLoss):
    r"""Margin-MSE: regress the student's (positive - negative) margin onto the teacher's.

    .. math::

        \ell = \frac{1}{B} \sum_{b} \big((s_{b,0} - s_{b,1}) - m_b\big)^2

    where :math:`m_b` is the teacher margin: given directly as ``targets`` of shape (B,), or
    computed as ``t_{b,0} - t_{b,1}`` from teacher scores of shape (B, 2). Document 0 of each
    pair is usually the positive, but both may be relevant or not.

    Inputs:
        +---------+--------------+-------+-----------------------------------------------+
        | name    | shape        | dtype | meaning                                       |
        +=========+==============+=======+===============================================+
        | scores  | (B, 2)       | float | student scores of (doc 0, doc 1)              |
        +---------+--------------+-------+-----------------------------------------------+
        | targets | (B,) or      | float | teacher margins s_T(q, d0) - s_T(q, d1), or   |
        |         | (B, 2)       |       | teacher scores of (doc 0, doc 1)              |
        +---------+--------------+-------+-----------------------------------------------+
        | mask    | (B, 2)       | bool  | optional; must be all True (no padding here)  |
        +---------+--------------+-------+-----------------------------------------------+

    References:
        - Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
          Knowledge Distillation", 2020. https://arxiv.org/abs/2010.02666
    """

    name = "margin_mse"
    input_kind = "pairwise"
    group_size = 2

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = check_scores("MarginMSE", scores, "(B, 2)", (2,))
        if scores.shape[1] != 2:
            raise InputError(f"MarginMSE: expected scores of shape (B, 2), got "
                             f"({scores.shape[0]}, {scores.shape[1]})", field="scores")
        if isinstance(targets, torch.Tensor) and targets.ndim == 1:
            margins = check_targets("MarginMSE", targets, scores, "(B,)", (scores.shape[0],))
        else:
            teacher = check_targets("MarginMSE", targets, scores, "(B, 2)")
            margins = teacher[:, 0] - teacher[:, 1]
        mask = check_mask("MarginMSE", mask, scores, "(B, 2)")
        if not bool(mask.all()):
            raise InputError("MarginMSE: padding is not allowed; every row needs both documents",
                             field="mask")
        return torch.mean((scores[:, 0] - scores[:, 1] - margins) ** 2)
