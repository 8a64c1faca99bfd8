"""Pointwise losses: each (query, document) score is judged on its own."""

from __future__ import annotations

import torch

from rankstack.errors import InputError
from rankstack.train.losses._base import (
    RankingLoss,
    blank_padding,
    check_mask,
    check_positive,
    check_scores,
    check_targets,
    masked_mean,
)


class BCELoss(RankingLoss):
    r"""Binary cross-entropy on logits (monoBERT-style pointwise training).

    .. math::

        \ell = \frac{1}{|V|} \sum_{i \in V} -\big[w\, y_i \log \sigma(s_i)
               + (1 - y_i) \log(1 - \sigma(s_i))\big]

    with :math:`\sigma` the logistic function, :math:`V` the unmasked positions and
    :math:`w` the optional ``pos_weight``. Scores are logits: do not apply a sigmoid first.

    Args:
        pos_weight: weight of the positive term (e.g. ``n_neg / n_pos``); None = 1.

    Inputs:
        +---------+--------------------+---------+----------------------------------------+
        | name    | shape              | dtype   | meaning                                |
        +=========+====================+=========+========================================+
        | scores  | (B,) or (B, N)     | float   | model logits                           |
        +---------+--------------------+---------+----------------------------------------+
        | targets | same as scores     | float   | labels in [0, 1] (1 = relevant); soft  |
        |         |                    |         | labels allowed                         |
        +---------+--------------------+---------+----------------------------------------+
        | mask    | same as scores     | bool    | optional; False = padding (ignored)    |
        +---------+--------------------+---------+----------------------------------------+

    References:
        - Nogueira & Cho, "Passage Re-ranking with BERT", 2019. https://arxiv.org/abs/1901.04085
    """

    name = "bce"
    input_kind = "pointwise"

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = None if pos_weight is None else check_positive(
            "pos_weight", pos_weight, "BCELoss")

    def _hparams(self) -> dict[str, object]:
        return {"pos_weight": self.pos_weight}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        shape = "(B,) or (B, N)"
        scores = check_scores("BCELoss", scores, shape, (1, 2))
        mask = check_mask("BCELoss", mask, scores, shape, need_one_per_row=False)
        targets = check_targets("BCELoss", targets, scores, shape, mask=mask)
        if bool(((targets < 0) | (targets > 1)).any()):
            raise InputError("BCELoss: targets must be labels in [0, 1]; graded relevance "
                             "must be binarised first", field="targets")
        pw = None if self.pos_weight is None else scores.new_tensor(self.pos_weight)
        per_item = torch.nn.functional.binary_cross_entropy_with_logits(
            blank_padding(scores, mask), targets, pos_weight=pw, reduction="none")
        return masked_mean(per_item, mask)
