"""Listwise losses: a query's N documents are scored together, shape (B, N) with a mask.

Every loss here reduces to one value per query and averages over the B queries (ApproxNDCG
and LambdaLoss skip queries whose ideal DCG is 0, i.e. with no gain at all).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from rankstack.errors import ConfigError, InputError
from rankstack.train.losses._base import (
    RankingLoss,
    approx_ranks,
    blank_padding,
    check_choice,
    check_mask,
    check_positive,
    check_scores,
    check_targets,
    ranks_from_targets,
    zero_loss,
)
from rankstack.train.losses.pairwise import PairWeight, ranknet_loss


def _validate(owner: str, scores, targets, mask):
    scores = check_scores(owner, scores, "(B, N)", (2,))
    mask = check_mask(owner, mask, scores, "(B, N)")
    targets = check_targets(owner, targets, scores, "(B, N)", mask=mask)
    return blank_padding(scores, mask), targets, mask


def _neg_inf_where_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf"))


def _gains(owner: str, targets: torch.Tensor, mask: torch.Tensor, gain: str) -> torch.Tensor:
    g = torch.pow(2.0, targets) - 1.0 if gain == "exp" else targets
    g = torch.where(mask, g, torch.zeros_like(g))
    if not bool(torch.isfinite(g).all()):
        raise InputError(f"{owner}: gain 2^t - 1 overflows for targets up to "
                         f"{targets[mask].max().item():g}; use gain='linear' (the natural "
                         f"choice for targets_from_ranks targets)", field="targets")
    return g


def _ideal_dcg(gains: torch.Tensor) -> torch.Tensor:
    """Ideal DCG per row from (masked, zeroed) gains: sort desc, discount 1/log2(1 + k)."""
    g, _ = torch.sort(gains, dim=1, descending=True)
    k = torch.arange(1, g.shape[1] + 1, device=g.device, dtype=g.dtype)
    return (g / torch.log2(1.0 + k)).sum(dim=1)


def _check_nonnegative(owner: str, targets: torch.Tensor, mask: torch.Tensor) -> None:
    if bool((targets[mask] < 0).any()):
        raise InputError(f"{owner}: targets are gains and must be >= 0 (graded labels, or "
                         f"targets_from_ranks(rank, depth)); got a negative value",
                         field="targets")


class InfoNCE(RankingLoss):
    r"""InfoNCE / Localized Contrastive Estimation (LCE): softmax cross-entropy of one positive.

    .. math::

        \ell = \frac{1}{B} \sum_b -\log
            \frac{e^{s_{b,p_b}/\tau}}{\sum_{j \in V_b} e^{s_{b,j}/\tau}}

    :math:`V_b` = unmasked documents of query b; :math:`p_b` = the positive: index 0
    (``positive="first"``, the layout of ``single_relevant`` groups) or the first position with
    the largest target (``positive="targets"``; rows whose targets are all equal raise, as they
    have no positive). Other relevant documents in the list count as negatives.

    Args:
        temperature: :math:`\tau` (> 0).
        positive: ``"first"`` or ``"targets"``.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | positive='targets': the positive is the first    |
        |         |         |       | arg-max; ignored with positive='first'           |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
          2018. https://arxiv.org/abs/1807.03748
        - Gao, Dai & Callan, "Rethink Training of BERT Rerankers in Multi-Stage Retrieval
          Pipeline" (LCE), ECIR 2021. https://arxiv.org/abs/2101.08751
    """

    name = "infonce"
    input_kind = "listwise"

    def __init__(self, temperature: float = 1.0,
                 positive: Literal["first", "targets"] = "first") -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature, "InfoNCE")
        self.positive = check_choice("positive", positive, ("first", "targets"), "InfoNCE")

    def _hparams(self) -> dict[str, object]:
        return {"temperature": self.temperature, "positive": self.positive}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate("InfoNCE", scores, targets, mask)
        if self.positive == "first":
            if not bool(mask[:, 0].all()):
                raise InputError("InfoNCE: positive='first' but position 0 is masked in some "
                                 "row", field="mask")
            pos = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        else:
            keyed = _neg_inf_where_masked(targets, mask)
            top = keyed.max(dim=1).values
            low = targets.masked_fill(~mask, float("inf")).min(dim=1).values
            flat = ((top == low) & (mask.sum(dim=1) > 1)).nonzero().flatten().tolist()
            if flat:
                raise InputError(f"InfoNCE: row(s) {flat[:5]} have all-equal targets, so no "
                                 f"positive", field="targets")
            pos = (keyed == top[:, None]).to(torch.int8).argmax(dim=1)  # first maximum
        logits = _neg_inf_where_masked(scores / self.temperature, mask)
        return torch.nn.functional.cross_entropy(logits, pos)


class ListNet(RankingLoss):
    r"""ListNet (top-one probability cross-entropy) between target and score distributions.

    .. math::

        p_{b,i} = \frac{e^{t_{b,i}/\tau}}{\sum_{j \in V_b} e^{t_{b,j}/\tau}}, \qquad
        \ell = \frac{1}{B} \sum_b -\sum_{i \in V_b} p_{b,i} \log
            \frac{e^{s_{b,i}}}{\sum_{j \in V_b} e^{s_{b,j}}}

    :class:`KLDivergence` subtracts the target entropy :math:`H(p_b)` (same gradient, but 0
    at the optimum).

    Args:
        temperature: :math:`\tau` applied to the targets only (> 0); with
            ``targets_from_ranks`` targets a larger :math:`\tau` gives a flatter teacher.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | teacher scores or relevance (higher = better)    |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach",
          ICML 2007.
    """

    name = "listnet"
    input_kind = "listwise"
    _kl = False

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature, type(self).__name__)

    def _hparams(self) -> dict[str, object]:
        return {"temperature": self.temperature}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate(type(self).__name__, scores, targets, mask)
        log_p = torch.log_softmax(_neg_inf_where_masked(targets / self.temperature, mask), dim=1)
        log_q = torch.log_softmax(_neg_inf_where_masked(scores, mask), dim=1)
        p = log_p.exp()
        zero = torch.zeros_like(scores)
        per_item = -p * log_q
        if self._kl:
            per_item = per_item + p * log_p
        return torch.where(mask, per_item, zero).sum(dim=1).mean()


class KLDivergence(ListNet):
    r"""KL divergence :math:`\mathrm{KL}(p \,\|\, q)` of the score softmax from the target
    softmax (with target temperature :math:`\tau`); ListNet minus the target entropy.

    .. math::

        \ell = \frac{1}{B} \sum_b \sum_{i \in V_b} p_{b,i}
            \big(\log p_{b,i} - \log q_{b,i}\big),
        \quad q_b = \mathrm{softmax}(s_b),\ p_b = \mathrm{softmax}(t_b / \tau)

    Args:
        temperature: :math:`\tau` applied to the targets only (> 0).

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | teacher scores or relevance (higher = better)    |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Kullback & Leibler, "On Information and Sufficiency", 1951.
        - Hinton et al., "Distilling the Knowledge in a Neural Network", 2015.
          https://arxiv.org/abs/1503.02531
    """

    name = "kl"
    _kl = True


class ApproxNDCG(RankingLoss):
    r"""ApproxNDCG: 1 - NDCG with ranks replaced by a smooth approximation.

    .. math::

        \hat\pi_i = 1 + \sum_{j \in V, j \ne i} \sigma\!\Big(\frac{s_j - s_i}{T}\Big), \qquad
        \ell_b = 1 - \frac{1}{\mathrm{IDCG}_b} \sum_{i \in V_b}
            \frac{g(t_i)}{\log_2(1 + \hat\pi_i)}

    with gain :math:`g(t) = 2^t - 1` (``gain="exp"``) or :math:`g(t) = t` (``"linear"``),
    :math:`\mathrm{IDCG}_b` the exact ideal DCG over the unmasked targets. Qin et al. write
    the sigmoid as :math:`\sigma(\alpha (s_j - s_i))`, so their :math:`\alpha = 1/T`.
    Queries with :math:`\mathrm{IDCG}_b = 0` are skipped; all skipped gives a connected 0
    (``zero_idcg="count"``: such a query adds a loss of 1 to the mean, as lightning-ir's
    ``ApproxNDCG`` does with its ``idcg.clamp(min=1e-12)``; it has no gradient either way, it
    only scales the batch loss). With rank targets (``depth - rank + 1``) use ``gain="linear"``: ``2^t`` explodes with depth.

    Args:
        temperature: :math:`T` (> 0); smaller = closer to the true (step-function) ranks.
        gain: ``"exp"`` or ``"linear"``.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | non-negative gains: qrels grades or              |
        |         |         |       | targets_from_ranks(rank, depth)                  |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Qin, Liu & Li, "A General Approximation Framework for Direct Optimization of
          Information Retrieval Measures", Information Retrieval 13(4), 2010.
    """

    name = "approx_ndcg"
    input_kind = "listwise"

    def __init__(self, temperature: float = 1.0, gain: Literal["exp", "linear"] = "exp",
                 zero_idcg: Literal["skip", "count"] = "skip") -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature, "ApproxNDCG")
        self.gain = check_choice("gain", gain, ("exp", "linear"), "ApproxNDCG")
        self.zero_idcg = check_choice("zero_idcg", zero_idcg, ("skip", "count"), "ApproxNDCG")

    def _hparams(self) -> dict[str, object]:
        return {"temperature": self.temperature, "gain": self.gain, "zero_idcg": self.zero_idcg}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate("ApproxNDCG", scores, targets, mask)
        _check_nonnegative("ApproxNDCG", targets, mask)
        gains = _gains(type(self).__name__, targets, mask, self.gain)
        idcg = _ideal_dcg(gains)
        ranks = approx_ranks(scores, mask, self.temperature)
        dcg = (gains / torch.log2(1.0 + ranks)).sum(dim=1)
        keep = idcg > 0
        if self.zero_idcg == "count":
            return (1.0 - dcg / idcg.clamp(min=1e-12)).mean()
        if not bool(keep.any()):
            return zero_loss(scores)
        return (1.0 - dcg[keep] / idcg[keep]).mean()


class ADRMSE(RankingLoss):
    r"""Approximate Discounted Rank MSE (ADR-MSE, Rank-DistiLLM).

    .. math::

        a_i = 1 + \sum_{j \in V, j \ne i} \sigma\!\Big(\frac{s_j - s_i}{T}\Big), \qquad
        \ell_b = \frac{1}{|V_b|} \sum_{i \in V_b} \frac{(a_i - r_i)^2}{\log_2(r_i + 1)}

    :math:`r_i` is the 1-based target rank of document i among the unmasked documents
    (descending target; tied targets share their average rank, e.g. [3, 1, 1] -> [1, 2.5,
    2.5]; ``ties="first"``: ties broken by list position, [1, 2, 3], as lightning-ir's
    ``ApproxRankMSE`` ranks with ``argsort(argsort(targets))``). The discount makes errors at
    the top of the target ranking cost more.

    Args:
        temperature: :math:`T` (> 0) of the approximate rank.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | higher = better; only their order is used        |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Schlatt et al., "A Systematic Investigation of Distilling Large Language Models into
          Cross-Encoders for Passage Re-ranking" (Rank-DistiLLM), 2024.
          https://arxiv.org/abs/2405.07920
    """

    name = "adr_mse"
    input_kind = "listwise"

    def __init__(self, temperature: float = 1.0,
                 ties: Literal["average", "first"] = "average") -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature, "ADRMSE")
        self.ties = check_choice("ties", ties, ("average", "first"), "ADRMSE")

    def _hparams(self) -> dict[str, object]:
        return {"temperature": self.temperature, "ties": self.ties}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate("ADRMSE", scores, targets, mask)
        r = ranks_from_targets(targets, mask, ties=self.ties)
        a = approx_ranks(scores, mask, self.temperature)
        per_item = (a - r) ** 2 / torch.log2(r.clamp(min=1.0) + 1.0)
        per_item = torch.where(mask, per_item, torch.zeros_like(per_item))
        return (per_item.sum(dim=1) / mask.sum(dim=1)).mean()


LambdaScheme = Literal["ndcg_loss2pp", "ndcg_loss2", "lambdarank"]


class LambdaLoss(RankingLoss):
    r"""LambdaLoss (Wang et al. 2018): metric-weighted pairwise logistic loss.

    Default scheme: **NDCG-Loss2++**. With :math:`\rho_i` the 1-based position of document i
    when sorted by the current scores (ties: earlier index first; no gradient flows through
    the weights), :math:`D(r) = \log_2(1 + r)`,
    :math:`G_i = g(t_i) / \mathrm{IDCG}` (gain as in :class:`ApproxNDCG`):

    .. math::

        \ell_b = -\sum_{t_i > t_j} w_{ij} \log_2 \sigma\big(\sigma_s (s_i - s_j)\big)

        \delta_{ij} = \Big|\frac{1}{D(|\rho_i - \rho_j|)} - \frac{1}{D(|\rho_i - \rho_j| + 1)}\Big|

        w_{ij} = \begin{cases}
            \mu\, \delta_{ij} |G_i - G_j| + \big|\frac{1}{D(\rho_i)} - \frac{1}{D(\rho_j)}\big|
                |G_i - G_j| & \text{ndcg\_loss2pp}\\
            \delta_{ij} |G_i - G_j| & \text{ndcg\_loss2}\\
            \big|\frac{1}{D(\rho_i)} - \frac{1}{D(\rho_j)}\big| |G_i - G_j|
                & \text{lambdarank (the LambdaRank weighting)}
        \end{cases}

    summed over the unmasked pairs of a query, averaged over queries with IDCG > 0.

    Args:
        scheme: ``"ndcg_loss2pp"`` (default), ``"ndcg_loss2"`` or ``"lambdarank"``.
        mu: :math:`\mu` of NDCG-Loss2++ (>= 0; ignored by the other schemes).
        sigma: :math:`\sigma_s` of the logistic (> 0).
        gain: ``"exp"`` (:math:`2^t - 1`, for graded qrels) or ``"linear"`` (for rank
            targets from :func:`targets_from_ranks`, where ``2^t`` explodes).

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | non-negative gains: qrels grades or              |
        |         |         |       | targets_from_ranks(rank, depth)                  |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Wang et al., "The LambdaLoss Framework for Ranking Metric Optimization", CIKM 2018.
        - Burges, "From RankNet to LambdaRank to LambdaMART: An Overview", 2010.
    """

    name = "lambdaloss"
    input_kind = "listwise"

    def __init__(self, scheme: LambdaScheme = "ndcg_loss2pp", mu: float = 10.0,
                 sigma: float = 1.0, gain: Literal["exp", "linear"] = "exp") -> None:
        super().__init__()
        self.scheme = check_choice("scheme", scheme, ("ndcg_loss2pp", "ndcg_loss2", "lambdarank"),
                                   "LambdaLoss")
        if isinstance(mu, bool) or not isinstance(mu, int | float) or not mu >= 0 \
                or mu == float("inf"):
            raise ConfigError(f"LambdaLoss: mu must be a finite number >= 0, got {mu!r}")
        self.mu = float(mu)
        self.sigma = check_positive("sigma", sigma, "LambdaLoss")
        self.gain = check_choice("gain", gain, ("exp", "linear"), "LambdaLoss")

    def _hparams(self) -> dict[str, object]:
        return {"scheme": self.scheme, "mu": self.mu, "sigma": self.sigma, "gain": self.gain}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate("LambdaLoss", scores, targets, mask)
        _check_nonnegative("LambdaLoss", targets, mask)
        with torch.no_grad():
            gains = _gains(type(self).__name__, targets, mask, self.gain)
            idcg = _ideal_dcg(gains)
            G = gains / idcg.clamp(min=torch.finfo(gains.dtype).tiny)[:, None]
            rho = ranks_from_targets(scores.detach(), mask, ties="first").clamp(min=1.0)
            inv_d = 1.0 / torch.log2(1.0 + rho)
            g_diff = (G[:, :, None] - G[:, None, :]).abs()
            lambdarank = (inv_d[:, :, None] - inv_d[:, None, :]).abs() * g_diff
            gap = (rho[:, :, None] - rho[:, None, :]).abs().clamp(min=1.0)
            delta = (1.0 / torch.log2(1.0 + gap) - 1.0 / torch.log2(2.0 + gap)).abs() * g_diff
            if self.scheme == "lambdarank":
                w = lambdarank
            elif self.scheme == "ndcg_loss2":
                w = delta
            else:
                w = self.mu * delta + lambdarank
            pairs = (targets[:, :, None] > targets[:, None, :]) & mask[:, :, None] \
                & mask[:, None, :]
            w = torch.where(pairs, w, torch.zeros_like(w))
        diff = scores[:, :, None] - scores[:, None, :]
        # -log2 sigmoid(x) = softplus(-x) / ln 2
        per_pair = w * torch.nn.functional.softplus(-self.sigma * diff) / math.log(2.0)
        per_query = per_pair.sum(dim=(1, 2))
        keep = idcg > 0
        if not bool(keep.any()):
            return zero_loss(scores)
        return per_query[keep].mean()


class TwolarLoss(RankingLoss):
    r"""TWOLAR's distillation loss: RankNet on targets :math:`1/(i+1)` of the teacher rank i.

    .. math::

        y_i = \frac{1}{\rho^T_i + 1}, \qquad
        \ell = \frac{1}{|P|} \sum_{y_i > y_j} w_{ij} \log\big(1 + e^{-\sigma (s_i - s_j)}\big)

    :math:`\rho^T_i` is the 0-based position of document i in the teacher's ranking: given
    directly (``targets_are="ranks"``) or derived from higher-is-better targets
    (``targets_are="relevance"``, the default, so the same batch targets serve every loss;
    ties broken by list position, so use it with teacher rankings, which have no ties).
    ``weight="none"`` (TWOLAR's code) makes only the order matter; ``"target_diff"``
    weights a pair by :math:`|y_i - y_j|`, putting the emphasis on the teacher's top ranks.

    Args:
        sigma: logistic steepness (> 0).
        weight: ``"none"`` or ``"target_diff"``.
        targets_are: ``"relevance"`` or ``"ranks"``.

    Inputs:
        +---------+---------+-------+--------------------------------------------------+
        | name    | shape   | dtype | meaning                                          |
        +=========+=========+=======+==================================================+
        | scores  | (B, N)  | float | model scores of N documents per query            |
        +---------+---------+-------+--------------------------------------------------+
        | targets | (B, N)  | float | relevance (higher = better), or 0-based teacher  |
        |         |         |       | ranks with targets_are='ranks'                   |
        +---------+---------+-------+--------------------------------------------------+
        | mask    | (B, N)  | bool  | optional; False = padding, ignored entirely;     |
        |         |         |       | every row needs at least one True                |
        +---------+---------+-------+--------------------------------------------------+

    References:
        - Baldelli et al., "TWOLAR: a TWO-step LLM-Augmented distillation method for passage
          Reranking", ECIR 2024. https://arxiv.org/abs/2403.17759
    """

    name = "twolar"
    input_kind = "listwise"

    def __init__(self, sigma: float = 1.0, weight: PairWeight = "none",
                 targets_are: Literal["relevance", "ranks"] = "relevance") -> None:
        super().__init__()
        self.sigma = check_positive("sigma", sigma, "TwolarLoss")
        self.weight = check_choice("weight", weight, ("none", "target_diff"), "TwolarLoss")
        self.targets_are = check_choice("targets_are", targets_are, ("relevance", "ranks"),
                                        "TwolarLoss")

    def _hparams(self) -> dict[str, object]:
        return {"sigma": self.sigma, "weight": self.weight, "targets_are": self.targets_are}

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        scores, targets, mask = _validate("TwolarLoss", scores, targets, mask)
        if self.targets_are == "ranks":
            bad = mask & ((targets < 0) | (targets != targets.round()))
            if bool(bad.any()):
                raise InputError("TwolarLoss: with targets_are='ranks' targets must be 0-based "
                                 "integer teacher ranks (>= 0)", field="targets")
            rank0 = targets
        else:
            rank0 = ranks_from_targets(targets, mask, ties="first") - 1.0
        y = torch.where(mask, 1.0 / (rank0 + 1.0), torch.zeros_like(rank0))
        return ranknet_loss(scores, y, mask, self.sigma, self.weight)  # type: ignore[arg-type]
