"""Hugging Face causal LMs (hub name or local directory) as an :class:`LLMBackend`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rankstack.errors import ConfigError, require
from rankstack.hf_loading import concrete_dtype, load_model, load_tokenizer, normalize_dtype
from rankstack.llm.base import (
    Generation,
    LLMBackend,
    NextTokenScores,
    Prompt,
    cut_at_stop,
    per_prompt,
)


class HFBackend(LLMBackend):
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` on CPU or GPU.

    Messages go through the tokenizer's chat template when it has one (``use_chat_template``
    turns that off); prompts are truncated from the left to ``max_input_tokens`` if set.
    A chat-templated prompt gets the tokenizer's BOS when the template does not write it
    (as rank_llm/vLLM tokenize the templated text with special tokens; ``add_bos=False``
    turns that off). ``dtype``: a name of :data:`rankstack.hf_loading.DTYPES` (aliases such as
    ``float32``/``bfloat16`` accepted; ``bf16-mixed`` is for encoder scorers only).
    :meth:`generate_batch` and :meth:`next_token_logprobs_batch` run ``batch_size`` prompts per
    forward pass, left-padded (default 1: one call per prompt); with greedy decoding their
    outputs are a single call's (listwise windows of many queries, pointwise pairs).
    """

    kind = "hf"

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "fp32",
                 threads: int | None = None, use_chat_template: bool = True,
                 max_input_tokens: int | None = None, trust_remote_code: bool = False,
                 batch_size: int = 1, add_bos: bool = True) -> None:
        torch = require("torch", "neural", "Hugging Face LLM backends")
        require("transformers", "neural", "Hugging Face LLM backends")
        dtype = normalize_dtype(dtype)
        if dtype == "bf16-mixed":
            raise ConfigError("dtype bf16-mixed is for encoder scorers; use bf16 or fp32 here")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.model_id = os.fspath(model)
        self.tokenizer = load_tokenizer(self.model_id, trust_remote_code=trust_remote_code)
        self.model = load_model("AutoModelForCausalLM", self.model_id, dtype=dtype,
                                device=device, trust_remote_code=trust_remote_code)
        self.device = device
        self.dtype = concrete_dtype(dtype, device)
        bos = self.tokenizer.bos_token_id
        #: BOS id added before chat-templated text that lacks it (None: the tokenizer adds none)
        self._bos = (bos if add_bos and bos is not None
                     and self.tokenizer.encode("a", add_special_tokens=True)[:1] == [bos]
                     else None)
        self.max_input_tokens = max_input_tokens
        self._chat = bool(use_chat_template and getattr(self.tokenizer, "chat_template", None))
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        self._eos_ids = frozenset(eos)
        import inspect

        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    @property
    def has_chat_template(self) -> bool:
        return self._chat

    def _prompt_text(self, prompt: Prompt) -> str:
        """The text :meth:`_input_ids` tokenizes (after the chat template, if any)."""
        if isinstance(prompt, str):
            return prompt
        if self._chat:
            return self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                      tokenize=False)
        return "\n\n".join(m["content"] for m in prompt)

    def _input_ids(self, prompt: Prompt) -> list[int]:
        tok = self.tokenizer
        if isinstance(prompt, str):
            ids = tok.encode(prompt, add_special_tokens=True)
        elif self._chat:
            text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            ids = tok.encode(text, add_special_tokens=False)
            if self._bos is not None and ids[:1] != [self._bos]:
                ids = [self._bos, *ids]
        else:
            ids = tok.encode("\n\n".join(m["content"] for m in prompt), add_special_tokens=True)
        if self.max_input_tokens and len(ids) > self.max_input_tokens:
            ids = ids[-self.max_input_tokens:]
        return ids

    def generate(self, prompt: Prompt, *, max_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> Generation:
        return self._generate([prompt], [max_tokens], stop, [[0]])[0]

    def generate_batch(self, prompts: Sequence[Prompt], *, max_tokens: int | Sequence[int] = 64,
                       stop: Sequence[str] | None = None) -> list[Generation]:
        """Greedy generation, :attr:`batch_size` prompts per ``model.generate`` call (similar
        lengths together, left-padded, masked); each output is cut at the first end-of-sequence
        token and at ``max_tokens`` of its own prompt, as a call of its own would be.
        ``batch_size`` 1: one :meth:`generate` call per prompt."""
        caps = per_prompt(max_tokens, len(prompts))
        if self.batch_size <= 1:
            return super().generate_batch(prompts, max_tokens=caps, stop=stop)
        ids = [self._input_ids(p) for p in prompts]
        return self._generate(prompts, caps, stop, self._chunks(ids), ids)

    def _generate(self, prompts: Sequence[Prompt], caps: list[int], stop: Sequence[str] | None,
                  chunks: list[list[int]], ids: list[list[int]] | None = None
                  ) -> list[Generation]:
        torch = self._torch
        ids = ids or [self._input_ids(p) for p in prompts]
        out: list[Generation] = [None] * len(ids)  # type: ignore[list-item]
        for chunk in chunks:
            x, mask = self._left_pad([ids[i] for i in chunk])
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=x, attention_mask=mask, max_new_tokens=max(caps[i] for i in chunk),
                    do_sample=False, pad_token_id=self._pad_id)
            width = x.shape[1]
            for row, i in enumerate(chunk):
                new = self._cut_at_eos(gen[row, width:].tolist()[: caps[i]])
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                out[i] = Generation(cut_at_stop(text, stop), len(ids[i]), len(new))
        return out

    def _chunks(self, ids: list[list[int]]) -> list[list[int]]:
        """Prompt indices, longest first, in batches of :attr:`batch_size` (less padding)."""
        order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
        b = max(1, int(self.batch_size))
        return [order[k:k + b] for k in range(0, len(order), b)]

    def _left_pad(self, rows: list[list[int]]):
        torch = self._torch
        width = max(len(r) for r in rows)
        x = torch.tensor([[self._pad_id] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows],
                            device=self.device)
        return x, mask

    def _cut_at_eos(self, new: list[int]) -> list[int]:
        """Tokens up to and including the first end-of-sequence token (a finished row of a
        batch goes on with padding)."""
        for k, t in enumerate(new):
            if t in self._eos_ids:
                return new[: k + 1]
        return new

    def _encode_plain(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode_one(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def next_token_logprobs(self, prompt: Prompt, candidates: Sequence[str]) -> NextTokenScores:
        return self._logprobs([prompt], candidates, batched=False)[0]

    def next_token_logprobs_batch(self, prompts: Sequence[Prompt],
                                  candidates: Sequence[str]) -> list[NextTokenScores]:
        """Next-token log-probabilities, :attr:`batch_size` left-padded prompts per forward
        pass (positions counted from each prompt's first real token); ``batch_size`` 1: one
        :meth:`next_token_logprobs` call per prompt."""
        if self.batch_size <= 1:
            return super().next_token_logprobs_batch(prompts, candidates)
        return self._logprobs(prompts, candidates, batched=True)

    def _logprobs(self, prompts: Sequence[Prompt], candidates: Sequence[str], *,
                  batched: bool) -> list[NextTokenScores]:
        torch = self._torch
        from rankstack.rerank.answer import drop_tail

        ids, answers = [], []
        for p in prompts:
            answer, tail = self.answer_ids(self._prompt_text(p), candidates)
            ids.append(drop_tail(self._input_ids(p), tail, str(self.model_id)))
            answers.append(answer)
        chunks = self._chunks(ids) if batched else [[i] for i in range(len(ids))]
        out: list[NextTokenScores] = [None] * len(ids)  # type: ignore[list-item]
        for chunk in chunks:
            x, mask = self._left_pad([ids[i] for i in chunk])
            kw = {"logits_to_keep": 1} if self._keeps_logits else {}
            with torch.inference_mode():
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(input_ids=x, attention_mask=mask, position_ids=pos,
                                    **kw).logits[:, -1]
                lp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(chunk):
                out[i] = NextTokenScores(
                    {c: float(lp[row, t]) for c, t in zip(candidates, answers[i], strict=True)},
                    len(ids[i]))
        return out

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)

    def cache_identity(self) -> str:
        return (f"{super().cache_identity()}:{self.dtype}:chat={self._chat}"
                f":max_in={self.max_input_tokens}:bos={self._bos is not None}")

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "device": self.device, "chat_template": self._chat,
                "batch_size": self.batch_size}
