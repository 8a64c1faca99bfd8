"""Listwise passage preparation: what text of each candidate goes into a window's prompt.

Three styles (``passages:`` setting of the ``llm-listwise`` family):

* ``rank_llm`` - rank_llm's ``convert_doc_to_prompt_content`` (RankZephyr, RankVicuna):
  ``"Title: {title} Content: {text}"`` when the doc has a title, stripped, cleaned with
  ``ftfy.fix_text``, cut to ``int(300 * 20 / n)`` **words** for a window of ``n`` passages, and
  ``[k]`` rewritten ``(k)`` (so passage text cannot fake an identifier); the query gets the
  same ``[k]`` -> ``(k)`` rewrite and cleaning. When the rendered prompt does not fit
  ``context_size`` minus the answer's tokens, the word cap shrinks by
  ``max(1, excess // (4 n))`` and the prompt is built again (rank_llm's ``create_prompt``).
* ``rankgpt`` - RankGPT's ``create_permutation_instruction``: the same ``Title: ... Content:``
  content with an empty ``"Title: Content: "`` removed, stripped, cut to 300 words; no
  cleaning, no identifier rewrite, no shrinking.
* ``tokens`` - rankstack's own (the family's default, kept for its figures): the passage text
  (title and text joined) cut to ``max_passage_tokens`` tokens of the backend's tokenizer.

References: ``rank_llm/rerank/listwise/listwise_rankllm.py`` (``convert_doc_to_prompt_content``,
``_replace_number``) and ``rank_listwise_os_llm.py`` (``create_prompt``), castorini/rank_llm
2024; ``rank_gpt.py`` of sunnweiwei/RankGPT.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rankstack.errors import ConfigError, require
from rankstack.records import Doc

PassageStyle = Literal["rank_llm", "rankgpt", "tokens"]
STYLES = ("rank_llm", "rankgpt", "tokens")

#: rank_llm / RankGPT: 300 words per passage for a window of 20
WORDS_PER_WINDOW = 300 * 20

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def replace_identifiers(text: str) -> str:
    """``[k]`` -> ``(k)``, rank_llm's ``_replace_number``."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def fix_text(text: str) -> str:
    """``ftfy.fix_text`` (mojibake, HTML entities, curly quotes); needs the ``llm`` extra."""
    ftfy = require("ftfy", "llm", "rank_llm-style passage cleaning (passages: rank_llm)")
    return ftfy.fix_text(text)


def doc_content(doc: Doc) -> str:
    """``Title: {title} Content: {text}`` when the doc has a title, else its text."""
    return f"Title: {doc.title} Content: {doc.text}" if doc.title else doc.text


def word_cap(window_size: int) -> float:
    """rank_llm's starting cap in words for a window of ``window_size`` passages."""
    return WORDS_PER_WINDOW / max(1, window_size)


def prepare_passage(doc: Doc, style: PassageStyle, max_words: float) -> str:
    """The prompt text of one candidate in ``rank_llm`` or ``rankgpt`` style."""
    if style == "rankgpt":
        content = doc_content(doc).replace("Title: Content: ", "").strip()
        return " ".join(content.split()[: int(max_words)])
    if style != "rank_llm":
        raise ConfigError(f"passages must be one of {', '.join(STYLES)}, not {style!r}")
    content = fix_text(doc_content(doc).strip())
    return replace_identifiers(" ".join(content.split()[: int(max_words)]))


def prepare_query(query: str, style: PassageStyle) -> str:
    """The query as the style writes it into prompts (rank_llm: cleaned, ``[k]`` -> ``(k)``)."""
    if style == "rank_llm":
        return replace_identifiers(fix_text(query))
    return query


@dataclass
class WindowPrompt:
    """A window's prompt and what its preparation did."""

    messages: Any
    #: the word cap the prompt was built with
    max_words: float
    #: prompt tokens (as counted for the context check) and rebuilds needed to fit
    tokens: int
    shrinks: int


def build_window_prompt(render: Callable[[str, Sequence[str]], Any], query: str,
                        docs: Sequence[Doc], style: PassageStyle, *,
                        count: Callable[[Any], int] | None = None, context_size: int = 4096,
                        answer_tokens: int = 0) -> WindowPrompt:
    """Render one window: ``render(query, passage_texts) -> messages``.

    With ``count`` (prompt -> tokens) the ``rank_llm`` style shrinks the word cap until the
    prompt fits ``context_size - answer_tokens``, as rank_llm's ``create_prompt`` does (the
    prompt must fit before generation starts).
    """
    n = len(docs)
    max_words = word_cap(n) if style == "rank_llm" else 300.0
    q = prepare_query(query, style)
    shrinks = 0
    while True:
        msgs = render(q, [prepare_passage(d, style, max_words) for d in docs])
        if style != "rank_llm" or count is None:
            return WindowPrompt(msgs, max_words, count(msgs) if count else 0, shrinks)
        tokens = count(msgs)
        budget = context_size - answer_tokens
        if tokens <= budget or max_words < 1:
            return WindowPrompt(msgs, max_words, tokens, shrinks)
        max_words -= max(1, (tokens - budget) // (n * 4))
        shrinks += 1


def answer_token_estimate(count_text: Callable[[str], int], n: int) -> int:
    """rank_llm's ``num_output_tokens``: the tokens of ``[1] > [2] > ... > [n]`` (rank_llm
    counts them with the BOS and subtracts one; ``count_text`` counts no special tokens)."""
    return count_text(" > ".join(f"[{i + 1}]" for i in range(n)))


__all__ = [
    "STYLES",
    "PassageStyle",
    "WindowPrompt",
    "answer_token_estimate",
    "build_window_prompt",
    "doc_content",
    "fix_text",
    "prepare_passage",
    "prepare_query",
    "prompt_token_counter",
    "replace_identifiers",
    "word_cap",
]


def prompt_token_counter(backend: Any) -> Callable[[Any], int]:
    """Tokens of a whole prompt as the backend will feed it (chat template and BOS included
    for in-process HF models; for other backends the messages' text tokens, a lower bound)."""
    ids = getattr(backend, "_input_ids", None)
    if callable(ids):
        return lambda prompt: len(ids(prompt))

    def approx(prompt: Any) -> int:
        if isinstance(prompt, str):
            return backend.count_tokens(prompt)
        return sum(backend.count_tokens(m["content"]) for m in prompt)

    return approx
