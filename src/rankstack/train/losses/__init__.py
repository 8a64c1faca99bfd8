"""Ranking losses for training and distilling re-rankers, grouped by input shape.

All losses are :class:`torch.nn.Module` objects with one call signature::

    loss = get_loss("ranknet")                 # or RankNet(), see LOSSES
    value = loss(scores, targets, mask)        # scalar tensor, mean over the batch

``scores``: model outputs (B, N) (BCE also (B,), MarginMSE (B, 2)); ``targets``: the same
shape, higher = more relevant (qrels grades, teacher scores, or teacher ranks converted by
:func:`targets_from_ranks`); ``mask``: optional bool (B, N), False for padding. Wrong shapes
or dtypes raise :class:`rankstack.errors.InputError` naming the expected shapes; bad
hyper-parameters raise :class:`rankstack.errors.ConfigError` at construction.

================  ==================  =========================================================
name              class               input
================  ==================  =========================================================
``bce``           :class:`BCELoss`    pointwise: (B,) or (B, N) logits, labels in [0, 1]
``ranknet``       :class:`RankNet`    pairwise over all pairs t_i > t_j of (B, N)
``margin_mse``    :class:`MarginMSE`  pairwise: (B, 2) scores vs (B,) margins / (B, 2) scores
``infonce``       :class:`InfoNCE`    listwise (B, N), one positive (LCE); alias ``lce``
``listnet``       :class:`ListNet`    listwise (B, N): cross-entropy of softmaxes
``kl``            :class:`KLDivergence` listwise (B, N): KL of softmaxes
``approx_ndcg``   :class:`ApproxNDCG` listwise (B, N), non-negative gains
``adr_mse``       :class:`ADRMSE`     listwise (B, N), approximate-rank MSE (Rank-DistiLLM)
``lambdaloss``    :class:`LambdaLoss` listwise (B, N), NDCG-Loss2++ by default
``twolar``        :class:`TwolarLoss` listwise (B, N), RankNet on 1/(rank+1) (TWOLAR)
================  ==================  =========================================================
"""

from __future__ import annotations

import inspect
from typing import Any

from rankstack.errors import ConfigError, require

require("torch", "neural", "rankstack training losses")

from rankstack.train.losses._base import (  # noqa: E402
    RankingLoss,
    approx_ranks,
    ranks_from_targets,
    targets_from_ranks,
)
from rankstack.train.losses.listwise import (  # noqa: E402
    ADRMSE,
    ApproxNDCG,
    InfoNCE,
    KLDivergence,
    LambdaLoss,
    ListNet,
    TwolarLoss,
)
from rankstack.train.losses.pairwise import MarginMSE, RankNet  # noqa: E402
from rankstack.train.losses.pointwise import BCELoss  # noqa: E402

#: name -> loss class; the only place a loss name is resolved.
LOSSES: dict[str, type[RankingLoss]] = {
    "bce": BCELoss,
    "ranknet": RankNet,
    "margin_mse": MarginMSE,
    "infonce": InfoNCE,
    "lce": InfoNCE,
    "listnet": ListNet,
    "kl": KLDivergence,
    "approx_ndcg": ApproxNDCG,
    "adr_mse": ADRMSE,
    "lambdaloss": LambdaLoss,
    "twolar": TwolarLoss,
}


def get_loss(name: str, **kwargs: Any) -> RankingLoss:
    """Build the loss registered as ``name`` with hyper-parameters ``kwargs``.

    Unknown names and unknown or bad keyword arguments raise :class:`ConfigError`.
    """
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"loss {name!r} does not take {', '.join(unknown)}; it takes "
                          f"{', '.join(accepted) or 'no parameters'}")
    return cls(**kwargs)


__all__ = [
    "ADRMSE",
    "LOSSES",
    "ApproxNDCG",
    "BCELoss",
    "InfoNCE",
    "KLDivergence",
    "LambdaLoss",
    "ListNet",
    "MarginMSE",
    "RankNet",
    "RankingLoss",
    "TwolarLoss",
    "approx_ranks",
    "get_loss",
    "ranks_from_targets",
    "targets_from_ranks",
]
