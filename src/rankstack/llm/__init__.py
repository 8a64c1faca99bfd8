"""LLM re-ranking: backends (HF, GGUF, OpenAI-compatible HTTP), listwise sliding-window
re-ranking (RankGPT / RankZephyr templates), pointwise yes/no log-odds, an on-disk call
cache and efficiency accounting.

Heavy libraries (torch, llama_cpp, httpx) are imported only when a backend is built.
"""

from rankstack.llm.accounting import LLMCaller, LLMRunReport, Usage
from rankstack.llm.base import Generation, LLMBackend, LLMBackendError, NextTokenScores
from rankstack.llm.cache import LLMCache
from rankstack.llm.listwise import ListwiseLLMReranker
from rankstack.llm.pointwise import PointwiseLLMReranker
from rankstack.llm.registry import BACKENDS, backend_class, load_backend, register_backend
from rankstack.llm.sliding_window import (
    RepairStats,
    SlidingWindowReranker,
    extract_ids,
    parse_permutation,
    repair_permutation,
    sliding_windows,
)
from rankstack.llm.templates import PromptTemplate, load_template

__all__ = [
    "BACKENDS",
    "Generation",
    "LLMBackend",
    "LLMBackendError",
    "LLMCache",
    "LLMCaller",
    "LLMRunReport",
    "ListwiseLLMReranker",
    "NextTokenScores",
    "PointwiseLLMReranker",
    "PromptTemplate",
    "RepairStats",
    "SlidingWindowReranker",
    "Usage",
    "backend_class",
    "extract_ids",
    "load_backend",
    "load_template",
    "parse_permutation",
    "register_backend",
    "repair_permutation",
    "sliding_windows",
]
