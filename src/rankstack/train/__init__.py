"""rankstack.train: losses, training groups from runs, students and the trainer.

Names are imported lazily (PEP 562), so ``import rankstack.train`` does not import torch;
the first access to e.g. ``rankstack.train.get_loss`` does (and raises
:class:`~rankstack.errors.MissingDependencyError` naming the extra if torch is missing).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    # losses
    "LOSSES": "rankstack.train.losses",
    "RankingLoss": "rankstack.train.losses",
    "BCELoss": "rankstack.train.losses",
    "RankNet": "rankstack.train.losses",
    "MarginMSE": "rankstack.train.losses",
    "InfoNCE": "rankstack.train.losses",
    "ListNet": "rankstack.train.losses",
    "KLDivergence": "rankstack.train.losses",
    "ApproxNDCG": "rankstack.train.losses",
    "ADRMSE": "rankstack.train.losses",
    "LambdaLoss": "rankstack.train.losses",
    "TwolarLoss": "rankstack.train.losses",
    "get_loss": "rankstack.train.losses",
    "targets_from_ranks": "rankstack.train.losses",
    "ranks_from_targets": "rankstack.train.losses",
    # training data
    "SKIP_REASONS": "rankstack.train.data",
    "TrainGroup": "rankstack.train.data",
    "GroupStats": "rankstack.train.data",
    "GroupBuilder": "rankstack.train.data",
    "QrelsGroupBuilder": "rankstack.train.data",
    "TeacherGroupBuilder": "rankstack.train.data",
    "GroupDataset": "rankstack.train.data",
    "GroupSampler": "rankstack.train.data",
    "GroupBatch": "rankstack.train.data",
    "collate_groups": "rankstack.train.data",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rankstack.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
