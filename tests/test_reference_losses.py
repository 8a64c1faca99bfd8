"""The lightning-ir variants of two listwise losses (issue 16.9), against lightning-ir's own
formulas (lightning_ir/loss/approximate.py: ApproxNDCG, ApproxRankMSE with log2 discount)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rankstack.train.losses.listwise import ADRMSE, ApproxNDCG  # noqa: E402


def _approx_ranks(scores, t=1.0):
    diff = torch.sigmoid((scores[:, None] - scores[..., None]) / t)
    return (diff * (1 - torch.eye(scores.shape[1]))).sum(-1) + 1


def test_approx_ndcg_zero_idcg_count_is_lightning_irs():
    scores = torch.tensor([[0.3, -1.2, 2.0], [0.5, 0.1, -0.4]])
    targets = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # query 2: no relevant doc
    ranks = _approx_ranks(scores)
    dcg = ((2 ** targets - 1) / torch.log2(1 + ranks)).sum(-1)
    ideal = torch.argsort(torch.argsort(targets, descending=True)) + 1
    idcg = ((2 ** targets - 1) / torch.log2(1 + ideal)).sum(-1)
    want = (1 - dcg / idcg.clamp(min=1e-12)).mean()
    got = ApproxNDCG(zero_idcg="count")(scores, targets)
    torch.testing.assert_close(got, want)
    # rankstack's default skips the query (same gradient, the mean over queries that count)
    torch.testing.assert_close(ApproxNDCG()(scores, targets), 1 - dcg[0] / idcg[0])


def test_adr_mse_first_ties_are_lightning_irs():
    scores = torch.tensor([[0.3, -1.2, 2.0, 0.7]])
    targets = torch.tensor([[3.0, 1.0, 1.0, 0.0]])  # a tie
    ranks = (torch.argsort(torch.argsort(targets, descending=True, stable=True)) + 1).float()
    want = ((_approx_ranks(scores) - ranks) ** 2 / torch.log2(ranks + 1)).mean()
    torch.testing.assert_close(ADRMSE(ties="first")(scores, targets), want)
    assert not torch.isclose(ADRMSE()(scores, targets), want)  # average ranks differ on ties
