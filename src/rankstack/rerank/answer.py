"""The one answer-token rule of yes/no relevance scoring (``yes-no`` scorers, LLM pointwise).

A yes/no score reads the next-token distribution after a prompt that ends where the answer
starts. Which token *is* the answer is decided here, once, for every model and backend:

1. The answer text is the word as it would follow the prompt: the bare word after
   whitespace (a chat template's generation prompt ends in a newline; ``"Answer: "``), else
   a space and the word (``"Answer:"`` -> ``" Yes"``).
2. Its token is the first token where tokenizing ``prompt + answer`` departs from tokenizing
   the prompt (robust to how a tokenizer marks spaces: ``▁Yes`` / ``ĠYes`` / ``Yes``).
3. Prompt-final tokens that merge into the answer (e.g. a trailing ``▁`` before ``▁Yes``)
   are the *tail*: they are dropped from the prompt, so the model predicts the answer token
   exactly as the text ``prompt + answer`` is tokenized. The answers must share the tail.

The score is then ``log P(yes token) - log P(no token)`` (or the logit difference): one
token per answer, no sum over spelling variants. HTTP servers return token *strings*, not
ids; there the answer is the returned token whose text, stripped, equals the word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rankstack.errors import ConfigError

Encode = Callable[[str], Sequence[int]]


def answer_text(context: str, word: str) -> str:
    """The answer as it follows ``context`` (rule 1)."""
    return word if not context or context[-1].isspace() else " " + word


def continuation_token(encode: Encode, context: str, text: str, what: str
                       ) -> tuple[int, list[int]]:
    """``(first token of text written after context, tail of context merging into it)``
    (rules 2 and 3); ``encode`` tokenizes without special tokens."""
    a = list(encode(context))
    b = list(encode(context + text))
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == len(b) or len(a) - k > 2:
        raise ConfigError(f"{what}: cannot find the token of {text!r} after the prompt (it "
                          f"merges with the prompt's end); give the token explicitly")
    return int(b[k]), [int(x) for x in a[k:]]


def answer_tokens(encode: Encode, context: str, words: Sequence[str], what: str
                  ) -> tuple[list[int], list[int]]:
    """Token ids of each answer word after ``context`` and their common tail (see module)."""
    ids, tails = [], []
    for w in words:
        tid, tail = continuation_token(encode, context, answer_text(context, w),
                                       f"{what} answer {w!r}")
        ids.append(tid)
        tails.append(tail)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{what}: answers {list(words)} resolve to the same token ids {ids}")
    if any(t != tails[0] for t in tails):
        raise ConfigError(f"{what}: the answers {list(words)} merge differently with the "
                          f"prompt's end; give the answer tokens explicitly")
    return ids, tails[0] if tails else []


def drop_tail(ids: Sequence[int], tail: Sequence[int], what: str) -> list[int]:
    """``ids`` without the answer-merging ``tail`` (rule 3)."""
    k = len(tail)
    if not k:
        return list(ids)
    if list(ids[-k:]) != list(tail):
        raise ConfigError(f"{what}: a prompt does not end with the template's usual tokens; "
                          f"give the answer tokens explicitly")
    return list(ids[:-k])
