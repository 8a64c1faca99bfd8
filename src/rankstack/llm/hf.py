"""Hugging Face causal LMs (hub name or local directory) as an :class:`LLMBackend`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rankstack.errors import ConfigError, require
from rankstack.llm.base import (
    Generation,
    LLMBackend,
    NextTokenScores,
    Prompt,
    cut_at_stop,
    logsumexp,
)

_DTYPES = ("auto", "float32", "bfloat16", "float16")


class HFBackend(LLMBackend):
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` on CPU or GPU.

    Messages go through the tokenizer's chat template when it has one (``use_chat_template``
    turns that off); prompts are truncated from the left to ``max_input_tokens`` if set.
    """

    kind = "hf"

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None, use_chat_template: bool = True,
                 max_input_tokens: int | None = None, trust_remote_code: bool = False) -> None:
        torch = require("torch", "neural", "Hugging Face LLM backends")
        transformers = require("transformers", "neural", "Hugging Face LLM backends")
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.model_id = os.fspath(model)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.model_id, trust_remote_code=trust_remote_code)
        kw = {} if dtype == "auto" else {"dtype": getattr(torch, dtype)}
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            self.model_id, trust_remote_code=trust_remote_code, **kw).to(device).eval()
        self.device = device
        self.dtype = dtype
        self.max_input_tokens = max_input_tokens
        self._chat = bool(use_chat_template and getattr(self.tokenizer, "chat_template", None))
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0

    @property
    def has_chat_template(self) -> bool:
        return self._chat

    def _input_ids(self, prompt: Prompt) -> list[int]:
        tok = self.tokenizer
        if isinstance(prompt, str):
            ids = tok.encode(prompt, add_special_tokens=True)
        elif self._chat:
            text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            ids = tok.encode(text, add_special_tokens=False)
        else:
            ids = tok.encode("\n\n".join(m["content"] for m in prompt), add_special_tokens=True)
        if self.max_input_tokens and len(ids) > self.max_input_tokens:
            ids = ids[-self.max_input_tokens:]
        return ids

    def generate(self, prompt: Prompt, *, max_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> Generation:
        torch = self._torch
        ids = self._input_ids(prompt)
        x = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                do_sample=False, pad_token_id=self._pad_id)
        new = out[0, len(ids):].tolist()
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos in new:
            new = new[: new.index(eos) + 1]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(cut_at_stop(text, stop), len(ids), len(new))

    def _encode_plain(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode_one(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def next_token_logprobs(self, prompt: Prompt, candidates: Sequence[str]) -> NextTokenScores:
        torch = self._torch
        ids = self._input_ids(prompt)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, -1]
            lp = torch.log_softmax(logits.float(), dim=-1).cpu()
        out = {c: logsumexp([float(lp[i]) for i in self._candidate_ids(c)]) for c in candidates}
        return NextTokenScores(out, len(ids))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)

    def cache_identity(self) -> str:
        return f"{super().cache_identity()}:{self.dtype}:chat={self._chat}:max_in={self.max_input_tokens}"

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "device": self.device, "chat_template": self._chat}
