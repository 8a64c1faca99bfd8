"""``rankstack llm-rerank``: a thin alias of ``rankstack rerank`` with an LLM family
(``--mode listwise`` -> ``llm-listwise``, ``--mode pointwise`` -> ``llm-pointwise``)."""

from __future__ import annotations

from rankstack.cli import rerank


def add_parser(sub) -> None:
    rerank.add_parser(sub, "llm-rerank", llm_alias=True)


run = rerank.run
