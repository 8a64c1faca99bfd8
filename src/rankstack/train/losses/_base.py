"""Base class, input validation and target helpers shared by all rankstack ranking losses.

Every loss is a :class:`torch.nn.Module` called as ``loss(scores, targets, mask=None)`` and
returning a scalar tensor. Conventions:

* ``scores`` are raw model outputs (logits / unnormalised relevance scores, higher = more
  relevant), floating point, and carry the gradient.
* ``targets`` are higher-is-better relevance values: graded qrels labels, teacher scores, or
  teacher ranks turned into relevance with :func:`targets_from_ranks` (``depth - rank + 1``).
* ``mask`` (bool, same shape as ``scores``) is ``True`` for real documents and ``False`` for
  padding. Padded positions never contribute to a loss or to its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal, overload

import torch

from rankstack.errors import ConfigError, InputError

InputKind = Literal["pointwise", "pairwise", "listwise"]


class RankingLoss(torch.nn.Module):
    """Base of every rankstack loss: ``forward(scores, targets, mask=None) -> scalar``.

    Subclasses set :attr:`name` (the registry key), :attr:`input_kind` and, when the loss
    needs a fixed number of documents per query, :attr:`group_size`.
    """

    #: registry key (see :data:`rankstack.train.losses.LOSSES`)
    name: ClassVar[str]
    #: "pointwise" (each score alone), "pairwise" or "listwise"
    input_kind: ClassVar[InputKind]
    #: documents per query the loss needs (e.g. 2 for MarginMSE); None = any N >= 1
    group_size: ClassVar[int | None] = None

    def forward(self, scores: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _hparams(self) -> dict[str, object]:
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._hparams().items())


# ---------------------------------------------------------------------------------------------
# construction-time validation


def check_positive(name: str, value: float, owner: str) -> float:
    """``value`` must be a finite number > 0, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: str, choices: Sequence[str], owner: str) -> str:
    if value not in choices:
        raise ConfigError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, "
                          f"got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# call-time validation


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_scores(owner: str, scores: object, expected: str, ndims: Sequence[int]) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise InputError(f"{owner}: scores must be a torch.Tensor of shape {expected}, "
                         f"got {type(scores).__name__}", field="scores")
    if not scores.is_floating_point():
        raise InputError(f"{owner}: scores must be a floating-point tensor of shape {expected}, "
                         f"got dtype {scores.dtype}", field="scores")
    if scores.ndim not in ndims or scores.numel() == 0:
        raise InputError(f"{owner}: expected scores of shape {expected}, got {_shape(scores)}",
                         field="scores")
    if scores.dtype in (torch.float16, torch.bfloat16):
        # losses run in float32: bf16 cannot even hold rank targets above 256 exactly
        scores = scores.float()
    return scores


def check_targets(owner: str, targets: object, scores: torch.Tensor, expected: str,
                  shape: Sequence[int] | None = None,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Targets must be a real-valued (or integer/bool) tensor of ``shape`` (default: scores').

    With a ``mask``, only unmasked targets must be finite; masked ones are replaced by 0.
    """
    want = tuple(scores.shape) if shape is None else tuple(shape)
    if not isinstance(targets, torch.Tensor):
        raise InputError(f"{owner}: targets must be a torch.Tensor of shape {expected}, "
                         f"got {type(targets).__name__}", field="targets")
    if targets.is_complex():
        raise InputError(f"{owner}: targets must be real numbers, got dtype {targets.dtype}",
                         field="targets")
    if tuple(targets.shape) != want:
        raise InputError(f"{owner}: expected targets of shape {expected} = "
                         f"({', '.join(map(str, want))}) to match scores {_shape(scores)}, "
                         f"got {_shape(targets)}", field="targets")
    targets = targets.to(device=scores.device, dtype=scores.dtype)
    if mask is not None:
        targets = targets.masked_fill(~mask, 0.0)
    if not bool(torch.isfinite(targets).all()):
        raise InputError(f"{owner}: targets contain NaN or infinite values", field="targets")
    return targets.detach()


def check_mask(owner: str, mask: object, scores: torch.Tensor, expected: str,
               need_one_per_row: bool = True) -> torch.Tensor:
    """A bool mask of the scores' shape (True = real document); None means all True."""
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        what = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"{owner}: mask must be a bool tensor of shape {expected} "
                         f"(True = real document, False = padding), got {what}", field="mask")
    if mask.shape != scores.shape:
        raise InputError(f"{owner}: expected mask of shape {expected} to match scores "
                         f"{_shape(scores)}, got {_shape(mask)}", field="mask")
    mask = mask.to(scores.device)
    if need_one_per_row and scores.ndim == 2:
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise InputError(f"{owner}: query row(s) {empty[:5]} have no unmasked document",
                             field="mask")
    return mask


def blank_padding(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores with padded positions set to 0, so inf/NaN padding cannot leak into a loss."""
    return scores.masked_fill(~mask, 0.0)


def zero_loss(scores: torch.Tensor) -> torch.Tensor:
    """A zero that stays connected to the graph (so ``backward()`` still works)."""
    return (scores * 0.0).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over True positions of ``mask`` (0 if there are none)."""
    n = mask.sum()
    if int(n) == 0:
        return zero_loss(values)
    return torch.where(mask, values, torch.zeros_like(values)).sum() / n


# ---------------------------------------------------------------------------------------------
# targets and ranks


@overload
def targets_from_ranks(ranks: torch.Tensor, depth: int) -> torch.Tensor: ...
@overload
def targets_from_ranks(ranks: int, depth: int) -> float: ...
@overload
def targets_from_ranks(ranks: Sequence[int], depth: int) -> list[float]: ...


def targets_from_ranks(ranks, depth):
    """Teacher ranks (1-based, 1 = best) -> relevance targets ``depth - rank + 1``.

    Rank 1 gets ``depth``, rank ``depth`` gets 1; higher is better, as every loss expects.
    Accepts an int, a sequence of ints (returns a list of floats) or a tensor (returns a
    float tensor). Ranks outside ``1..depth`` raise :class:`InputError`.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"targets_from_ranks: depth must be an int >= 1, got {depth!r}")
    if isinstance(ranks, torch.Tensor):
        if ranks.numel() and (bool((ranks < 1).any()) or bool((ranks > depth).any())):
            raise InputError(f"targets_from_ranks: ranks must lie in 1..{depth}, got values in "
                             f"{ranks.min().item()}..{ranks.max().item()}", field="ranks")
        if ranks.is_floating_point() and not bool((ranks == ranks.round()).all()):
            raise InputError("targets_from_ranks: ranks must be whole numbers", field="ranks")
        dtype = ranks.dtype if ranks.is_floating_point() else torch.float32
        return depth - ranks.to(dtype) + 1
    single = isinstance(ranks, int)
    values = [ranks] if single else list(ranks)
    out: list[float] = []
    for r in values:
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= depth:
            raise InputError(f"targets_from_ranks: rank {r!r} is not an int in 1..{depth}",
                             field="ranks")
        out.append(float(depth - r + 1))
    return out[0] if single else out


def ranks_from_targets(targets: torch.Tensor, mask: torch.Tensor,
                       ties: Literal["average", "first"] = "average") -> torch.Tensor:
    """1-based ranks of each row's unmasked items by descending target (float tensor).

    ``ties="average"``: tied targets share the mean of the positions they occupy (fractional
    ranking: targets [3, 1, 1] -> ranks [1, 2.5, 2.5]). ``ties="first"``: ties broken by list
    position (earlier = better). Masked positions get rank 0 and must be ignored by callers.
    """
    big = torch.finfo(targets.dtype).max
    keyed = torch.where(mask, targets, torch.full_like(targets, -big))
    order = torch.argsort(keyed, dim=1, descending=True, stable=True)
    positions = torch.arange(1, targets.shape[1] + 1, device=targets.device,
                             dtype=targets.dtype).expand_as(targets)
    ranks = torch.empty_like(targets).scatter_(1, order, positions)
    if ties == "average":
        # mean position among items with an equal target in the same row
        same = (targets[:, :, None] == targets[:, None, :]) & mask[:, None, :] & mask[:, :, None]
        ranks = (same.to(targets.dtype) * ranks[:, None, :]).sum(-1) / \
            same.sum(-1).clamp(min=1).to(targets.dtype)
    return torch.where(mask, ranks, torch.zeros_like(ranks))


def approx_ranks(scores: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable ranks ``a_i = 1 + sum_{j != i, j unmasked} sigmoid((s_j - s_i) / T)``."""
    diff = (scores[:, None, :] - scores[:, :, None]) / temperature  # [b, i, j] = s_j - s_i
    pair = torch.sigmoid(diff)
    n = scores.shape[1]
    keep = mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=scores.device)[None]
    return 1.0 + torch.where(keep, pair, torch.zeros_like(pair)).sum(-1)
