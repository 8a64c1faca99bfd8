"""rankstack: multi-stage passage ranking with LLM re-rankers and the cross-encoders distilled from them."""

from rankstack.errors import ConfigError, InputError, MissingDependencyError, RankstackError
from rankstack.records import Doc, Qrels, Query, Ranking, Run, ScoredDoc, rank_key

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Doc",
    "InputError",
    "MissingDependencyError",
    "Qrels",
    "Query",
    "Ranking",
    "RankstackError",
    "Run",
    "ScoredDoc",
    "__version__",
    "rank_key",
]
