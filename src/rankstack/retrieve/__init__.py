"""First-stage retrieval: BM25 over a passage corpus (bm25s backend)."""

from rankstack.retrieve.bm25 import BM25Index, SearchStats

__all__ = ["BM25Index", "SearchStats"]
