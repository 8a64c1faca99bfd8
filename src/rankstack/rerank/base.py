"""The scorer interface every re-ranking model family implements.

A :class:`Scorer` maps (query text, passage text) pairs to one float per pair. Scores are
comparable only within one scorer; :attr:`Scorer.score_kind` states what they are (e.g.
``"logit"``, ``"log_prob"``, ``"cosine"``). Higher is always better.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np


class Scorer(ABC):
    """Scores query-passage pairs. Implementations must return scores in input order."""

    #: registry key of the family (see :data:`rankstack.rerank.registry.SCORERS`)
    family: ClassVar[str]
    #: what a score is: "logit", "log_prob", "prob", "logit_diff", "cosine", "dot", ...
    score_kind: ClassVar[str]

    #: model id used as the ``scorer`` of produced Rankings
    name: str

    @abstractmethod
    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """``queries[i]`` pairs with ``passages[i]``; returns float32 scores of shape (n,)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sessions). Optional."""
