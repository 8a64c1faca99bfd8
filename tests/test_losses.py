"""rankstack.train.losses: hand-computed values, gradient signs, masks, validation."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from rankstack.errors import ConfigError, InputError  # noqa: E402
from rankstack.train.losses import (  # noqa: E402
    ADRMSE,
    LOSSES,
    ApproxNDCG,
    BCELoss,
    InfoNCE,
    KLDivergence,
    LambdaLoss,
    ListNet,
    MarginMSE,
    RankingLoss,
    RankNet,
    TwolarLoss,
    get_loss,
    ranks_from_targets,
    targets_from_ranks,
)

torch.set_num_threads(1)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softplus(x: float) -> float:  # log(1 + e^x)
    return math.log1p(math.exp(x))


def t(*rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype)


def approx(x: torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert x.ndim == 0
    assert x.item() == pytest.approx(expected, abs=tol, rel=tol)


# ---------------------------------------------------------------------------------------------
# hand-computed values


def test_bce_value():
    # -log sigmoid(2) = log(1 + e^-2); -log(1 - sigmoid(-1)) = log(1 + e^-1)
    expected = (softplus(-2.0) + softplus(-1.0)) / 2
    approx(BCELoss()(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])), expected)
    # pos_weight multiplies only the positive term
    expected_w = (3 * softplus(-2.0) + softplus(-1.0)) / 2
    approx(BCELoss(pos_weight=3.0)(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])),
           expected_w)


def test_ranknet_value_all_pairs_and_ties():
    s, y = t([2.0, 1.0, 0.0]), t([3.0, 1.0, 0.0])
    # pairs (0,1): s diff 1, (0,2): 2, (1,2): 1 ; loss per pair log(1 + e^-(s_i - s_j))
    expected = (softplus(-1) + softplus(-2) + softplus(-1)) / 3
    approx(RankNet()(s, y), expected)
    # weight by |t_i - t_j|: 2, 3, 1 ; still divided by the number of pairs
    expected_w = (2 * softplus(-1) + 3 * softplus(-2) + 1 * softplus(-1)) / 3
    approx(RankNet(weight="target_diff")(s, y), expected_w)
    # sigma scales the score difference
    approx(RankNet(sigma=2.0)(s, y), (softplus(-2) + softplus(-4) + softplus(-2)) / 3)
    # tied targets form no pair: t = [1, 1, 0] -> pairs (0,2), (1,2)
    approx(RankNet()(s, t([1.0, 1.0, 0.0])), (softplus(-2) + softplus(-1)) / 2)


def test_ranknet_no_pairs_is_connected_zero():
    s = t([1.0, 2.0]).requires_grad_()
    loss = RankNet()(s, t([1.0, 1.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None and torch.all(s.grad == 0)


def test_margin_mse_value():
    s = t([3.0, 1.0], [0.0, 1.0])
    # student margins 2 and -1 vs teacher margins 1 and 2: ((2-1)^2 + (-1-2)^2) / 2 = 5
    approx(MarginMSE()(s, torch.tensor([1.0, 2.0])), 5.0)
    approx(MarginMSE()(s, t([5.0, 4.0], [2.0, 0.0])), 5.0)


def test_infonce_value():
    s = t([1.0, 0.0, -1.0])
    z = math.exp(2) + math.exp(0) + math.exp(-2)  # logits / 0.5
    approx(InfoNCE(temperature=0.5)(s, t([1.0, 0.0, 0.0])), -math.log(math.exp(2) / z))
    # positive from targets: index 1
    approx(InfoNCE(temperature=0.5, positive="targets")(s, t([0.0, 1.0, 0.0])),
           -math.log(1 / z))


def test_listnet_and_kl_values():
    s, y = t([1.0, 0.0, 0.0]), t([2.0, 0.0, 0.0])
    ez = [math.exp(v / 2.0) for v in (2.0, 0.0, 0.0)]  # target temperature 2
    p = [e / sum(ez) for e in ez]
    es = [math.exp(v) for v in (1.0, 0.0, 0.0)]
    q = [e / sum(es) for e in es]
    ce = -sum(pi * math.log(qi) for pi, qi in zip(p, q, strict=True))
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    approx(ListNet(temperature=2.0)(s, y), ce)
    approx(KLDivergence(temperature=2.0)(s, y), kl)
    # KL is 0 when the score softmax equals the target softmax
    approx(KLDivergence(temperature=2.0)(y / 2.0, y), 0.0)


def test_approx_ndcg_value():
    s, y = t([1.0, 0.0]), t([0.0, 1.0])
    # approx rank of doc 1: 1 + sigmoid((s_0 - s_1) / T) = 1 + sigmoid(1); gain 2^1 - 1 = 1
    # IDCG = 1 / log2(2) = 1 ; doc 0 has gain 0
    approx(ApproxNDCG()(s, y), 1 - 1 / math.log2(1 + 1 + sig(1.0)))
    # temperature 0.5 doubles the difference; linear gain with target 2 -> gain 2, IDCG 2
    approx(ApproxNDCG(temperature=0.5, gain="linear")(s, t([0.0, 2.0])),
           1 - (2 / math.log2(2 + sig(2.0))) / 2)


def test_adr_mse_value():
    s, y = t([1.0, 0.0, -1.0]), t([0.0, 2.0, 1.0])
    r = [3, 1, 2]  # target ranks
    a = [1 + sig(-1) + sig(-2), 1 + sig(1) + sig(-1), 1 + sig(2) + sig(1)]
    expected = sum((ai - ri) ** 2 / math.log2(ri + 1) for ai, ri in zip(a, r, strict=True)) / 3
    approx(ADRMSE()(s, y), expected)


def test_lambdaloss_values():
    # 2 docs in the wrong order: s = [0.5, 1.0], t = [1, 0]; gains [1, 0], IDCG 1, G = [1, 0]
    # predicted positions rho = [2, 1]; lambdarank weight |1/log2(3) - 1/log2(2)| * 1
    # delta for |rho_i - rho_j| = 1: |1/log2(2) - 1/log2(3)|; NDCG-Loss2++: mu*delta + lambdarank
    s, y = t([0.5, 1.0]), t([1.0, 0.0])
    base = 1 - 1 / math.log2(3)
    pair = softplus(-(0.5 - 1.0)) / math.log(2)  # -log2 sigmoid(s_0 - s_1)
    approx(LambdaLoss()(s, y), (10 * base + base) * pair)
    approx(LambdaLoss(scheme="ndcg_loss2")(s, y), base * pair)
    approx(LambdaLoss(scheme="lambdarank")(s, y), base * pair)
    approx(LambdaLoss(mu=2.0)(s, y), 3 * base * pair)

    # 3 docs, lambdarank: s = [0, 2, 1], t = [2, 0, 1]; gains 2^t - 1 = [3, 0, 1]
    s, y = t([0.0, 2.0, 1.0]), t([2.0, 0.0, 1.0])
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    g = [3 / idcg, 0.0, 1 / idcg]
    inv_d = {0: 1 / math.log2(1 + 3), 1: 1 / math.log2(1 + 1), 2: 1 / math.log2(1 + 2)}  # rho
    total = 0.0
    for i, j in [(0, 1), (0, 2), (2, 1)]:  # pairs with t_i > t_j
        w = abs(inv_d[i] - inv_d[j]) * abs(g[i] - g[j])
        total += w * softplus(-([0.0, 2.0, 1.0][i] - [0.0, 2.0, 1.0][j])) / math.log(2)
    approx(LambdaLoss(scheme="lambdarank")(s, y), total)


def test_twolar_value():
    s = t([0.0, 1.0, 2.0])
    # teacher order 0, 1, 2 -> y = [1, 1/2, 1/3]; all three pairs, each the wrong way round
    expected = (softplus(1) + softplus(2) + softplus(1)) / 3
    approx(TwolarLoss()(s, t([3.0, 2.0, 1.0])), expected)
    approx(TwolarLoss(targets_are="ranks")(s, t([0.0, 1.0, 2.0])), expected)
    # weights |y_i - y_j| = 1/2, 2/3, 1/6
    expected_w = (0.5 * softplus(1) + (2 / 3) * softplus(2) + (1 / 6) * softplus(1)) / 3
    approx(TwolarLoss(weight="target_diff")(s, t([3.0, 2.0, 1.0])), expected_w)


def test_targets_and_ranks_helpers():
    assert targets_from_ranks([1, 2, 3], depth=3) == [3.0, 2.0, 1.0]
    assert targets_from_ranks(1, depth=100) == 100.0
    assert targets_from_ranks(torch.tensor([1, 100]), 100).tolist() == [100.0, 1.0]
    with pytest.raises(InputError, match="1..3"):
        targets_from_ranks([0, 1], depth=3)
    with pytest.raises(InputError):
        targets_from_ranks(torch.tensor([4]), depth=3)
    with pytest.raises(ConfigError):
        targets_from_ranks([1], depth=0)
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert ranks_from_targets(t([3.0, 1.0, 1.0]), mask).tolist() == [[1.0, 2.5, 2.5]]
    assert ranks_from_targets(t([3.0, 1.0, 1.0]), mask, ties="first").tolist() == \
        [[1.0, 2.0, 3.0]]
    # masked positions do not take a rank
    m = torch.tensor([[True, False, True]])
    assert ranks_from_targets(t([1.0, 9.0, 2.0]), m).tolist() == [[2.0, 0.0, 1.0]]


# ---------------------------------------------------------------------------------------------
# gradient sign: better order -> lower loss; top-target doc has a negative gradient

LISTLIKE = [
    RankNet(), RankNet(weight="target_diff"), InfoNCE(positive="targets"), ListNet(),
    KLDivergence(), ApproxNDCG(), ADRMSE(), LambdaLoss(), LambdaLoss(scheme="lambdarank"),
    LambdaLoss(scheme="ndcg_loss2"), TwolarLoss(),
]


@pytest.mark.parametrize("loss", LISTLIKE, ids=lambda x: repr(x))
def test_better_order_lower_loss_and_gradient_sign(loss: RankingLoss):
    y = targets_from_ranks(torch.tensor([[1, 2, 3, 4]]), depth=4)  # [4, 3, 2, 1]
    if isinstance(loss, ListNet):
        y = y / 4  # a softer teacher distribution
    good, bad = t([3.0, 2.0, 1.0, 0.0]), t([0.0, 1.0, 2.0, 3.0])
    assert loss(good, y).item() < loss(bad, y).item()
    s = t([0.1, -0.2, 0.3, 0.0]).requires_grad_()
    loss(s, y).backward()
    assert s.grad[0, 0].item() < 0  # raising the top-target doc's score lowers the loss
    assert s.grad[0, 3].item() > 0  # raising the bottom one raises it


def test_pointwise_and_margin_gradient_sign():
    s = torch.tensor([0.0, 0.0], requires_grad=True)
    BCELoss()(s, torch.tensor([1.0, 0.0])).backward()
    assert s.grad[0] < 0 < s.grad[1]
    s = t([0.0, 0.0]).requires_grad_()
    MarginMSE()(s, torch.tensor([2.0])).backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]
    s = t([0.0, 0.0, 0.0]).requires_grad_()
    InfoNCE()(s, t([1.0, 0.0, 0.0])).backward()
    assert s.grad[0, 0] < 0


# ---------------------------------------------------------------------------------------------
# masks: padding never contributes

MASKED = [*LISTLIKE, InfoNCE(), BCELoss()]


@pytest.mark.parametrize("loss", MASKED, ids=lambda x: repr(x))
def test_padding_never_contributes(loss: RankingLoss):
    s3, y3 = t([0.3, 1.2, -0.5]), t([2.0, 1.0, 0.0])
    if isinstance(loss, BCELoss):
        y3 = t([1.0, 0.0, 0.0])
    # pad with garbage scores / targets that would matter if they were used
    s5 = torch.cat([s3, t([50.0, -7.0])], dim=1).requires_grad_()
    y5 = torch.cat([y3, t([1.0, 1.0]) if isinstance(loss, BCELoss) else t([9.0, 5.0])], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    ref = loss(s3, y3)
    out = loss(s5, y5, mask)
    assert out.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    out.backward()
    assert torch.all(s5.grad[0, 3:] == 0)


@pytest.mark.parametrize("loss", MASKED, ids=lambda x: repr(x))
def test_non_finite_padding_is_harmless(loss: RankingLoss):
    s3, y3 = t([0.3, 1.2, -0.5]), t([1.0, 0.0, 0.0])
    s5 = torch.cat([s3, t([float("inf"), float("nan")])], dim=1).requires_grad_()
    y5 = torch.cat([y3, t([float("nan"), float("-inf")])], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    out = loss(s5, y5, mask)
    assert out.item() == pytest.approx(loss(s3, y3).item(), rel=1e-5, abs=1e-6)
    out.backward()
    assert torch.isfinite(s5.grad).all() and torch.all(s5.grad[0, 3:] == 0)


def test_half_precision_scores_computed_in_float32():
    # rank targets 300 and 299 are not representable apart in bf16; the loss upcasts scores
    s = t([1.0, 0.0]).to(torch.bfloat16).requires_grad_()
    y = t([300.0, 299.0])
    out = RankNet()(s, y)
    assert out.dtype == torch.float32
    approx(out, softplus(-1.0))
    out.backward()
    assert s.grad is not None and s.grad.dtype == torch.bfloat16


def test_padded_batch_is_mean_of_rows():
    # row 0 has 2 real docs, row 1 has 3; listwise losses average per-query values
    s = t([1.0, 0.0, 99.0], [0.2, 0.9, -0.3])
    y = t([1.0, 0.0, 5.0], [2.0, 0.0, 1.0])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    for loss in (ListNet(), KLDivergence(), ApproxNDCG(), ADRMSE(), LambdaLoss(),
                 InfoNCE(positive="targets")):
        row0 = loss(s[:1, :2], y[:1, :2])
        row1 = loss(s[1:], y[1:])
        assert loss(s, y, mask).item() == pytest.approx((row0 + row1).item() / 2, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# validation at call time and at construction


def test_shape_and_dtype_errors_name_expected_shapes():
    s = t([0.0, 1.0, 2.0])
    with pytest.raises(InputError, match=r"\(B, N\)"):
        ApproxNDCG()(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match=r"targets of shape \(B, N\) = \(1, 3\).*got \(1, 2\)"):
        RankNet()(s, t([1.0, 0.0]))
    with pytest.raises(InputError, match="floating-point"):
        ListNet()(torch.tensor([[1, 2]]), t([1.0, 0.0]))
    with pytest.raises(InputError, match="bool"):
        ADRMSE()(s, t([1.0, 0.0, 2.0]), torch.ones(1, 3))
    with pytest.raises(InputError, match="mask of shape"):
        ADRMSE()(s, t([1.0, 0.0, 2.0]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(InputError, match="no unmasked document"):
        InfoNCE(positive="targets")(s, t([1.0, 0.0, 2.0]), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(InputError, match=r"\(B, 2\)"):
        MarginMSE()(t([0.0, 1.0, 2.0]), torch.tensor([1.0]))
    with pytest.raises(InputError, match=r"\(B,\)"):
        MarginMSE()(t([0.0, 1.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        BCELoss()(torch.tensor([0.0]), torch.tensor([2.0]))
    with pytest.raises(InputError, match="NaN"):
        RankNet()(s, t([1.0, float("nan"), 0.0]))
    with pytest.raises(InputError, match=">= 0"):
        ApproxNDCG()(s, t([1.0, -1.0, 0.0]))
    with pytest.raises(InputError, match="gain='linear'"):
        LambdaLoss()(s, t([200.0, 199.0, 198.0]))
    with pytest.raises(InputError, match="no positive"):
        InfoNCE(positive="targets")(s, t([1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="position 0 is masked"):
        InfoNCE()(s, t([1.0, 0.0, 0.0]), torch.tensor([[False, True, True]]))
    with pytest.raises(InputError, match="0-based"):
        TwolarLoss(targets_are="ranks")(s, t([0.0, 1.5, 2.0]))
    with pytest.raises(InputError, match="torch.Tensor"):
        RankNet()([[0.0, 1.0]], t([1.0, 0.0]))


@pytest.mark.parametrize("make", [
    lambda: InfoNCE(temperature=0), lambda: InfoNCE(temperature=-1.0),
    lambda: ListNet(temperature=float("nan")), lambda: ApproxNDCG(temperature="1"),
    lambda: ADRMSE(temperature=float("inf")), lambda: RankNet(sigma=0),
    lambda: RankNet(weight="bogus"), lambda: InfoNCE(positive="last"),
    lambda: ApproxNDCG(gain="cubic"), lambda: LambdaLoss(scheme="ndcg_loss1"),
    lambda: LambdaLoss(mu=-1.0), lambda: TwolarLoss(targets_are="scores"),
    lambda: BCELoss(pos_weight=0.0), lambda: KLDivergence(temperature=True),
])
def test_bad_hyperparameters_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_registry_and_get_loss():
    for name, cls in LOSSES.items():
        assert issubclass(cls, RankingLoss)
        assert cls.name == name or (name, cls.name) == ("lce", "infonce")
        assert isinstance(get_loss(name), cls)
    assert get_loss("infonce", temperature=0.1).temperature == 0.1
    assert get_loss("lambdaloss", scheme="lambdarank").scheme == "lambdarank"
    with pytest.raises(ConfigError, match="unknown loss 'softmax'.*ranknet"):
        get_loss("softmax")
    with pytest.raises(ConfigError, match="does not take margin.*sigma, weight"):
        get_loss("ranknet", margin=1.0)
    with pytest.raises(ConfigError):
        get_loss("margin_mse", temperature=1.0)
