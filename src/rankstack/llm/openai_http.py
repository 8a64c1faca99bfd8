"""Any OpenAI-compatible HTTP server (vLLM, llama.cpp server, TGI, OpenAI) as an LLMBackend.

``base_url`` is the API root including ``/v1`` (as in the OpenAI SDK). Generation uses
``/chat/completions`` for chat messages (the server applies the chat template) or
``/completions`` for plain prompts (``endpoint="completions"`` forces plain prompts).
Next-token scores need a server that returns log-probs: chat ``logprobs``/``top_logprobs``
or completions ``logprobs=k``.

Robustness: each request has a timeout; 429, 5xx, timeouts and connection errors are
retried up to ``max_retries`` times with exponential backoff and jitter (a server's
``Retry-After`` is honoured, capped at ``backoff_max``); at most ``max_concurrency``
requests are in flight (re-rankers run that many queries or pairs in parallel).

Without a local ``tokenizer`` (HF name or path), token counts and passage truncation are
approximate: words and punctuation marks count as one token each. Token usage in reports
comes from the server's ``usage`` field when it sends one.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rankstack.errors import ConfigError, require
from rankstack.llm.base import (
    Generation,
    LLMBackend,
    LLMBackendError,
    NextTokenScores,
    Prompt,
    cut_at_stop,
    logsumexp,
    plain_prompt,
)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]")


class OpenAIBackend(LLMBackend):
    kind = "openai"

    def __init__(self, model: str, *, base_url: str = "http://127.0.0.1:8000/v1",
                 api_key: str | None = None, endpoint: str = "chat", timeout: float = 120.0,
                 max_retries: int = 5, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 max_concurrency: int = 4, top_logprobs: int = 20,
                 tokenizer: str | None = None, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        httpx = require("httpx", "llm-http", "OpenAI-compatible HTTP backends")
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if max_concurrency < 1 or max_retries < 0:
            raise ConfigError("max_concurrency must be >= 1 and max_retries >= 0")
        self._httpx = httpx
        self.model_id = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.max_retries = max_retries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.max_concurrency = max_concurrency
        self.top_logprobs = top_logprobs
        self._sleep = sleep
        self._sem = threading.BoundedSemaphore(max_concurrency)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(base_url=self.base_url, headers=headers,
                                    timeout=httpx.Timeout(timeout), transport=transport)
        self._tok = None
        if tokenizer:
            transformers = require("transformers", "neural", "exact token counts")
            self._tok = transformers.AutoTokenizer.from_pretrained(tokenizer)
        #: retries made so far (all requests), for reports and tests
        self.retries = 0

    @property
    def has_chat_template(self) -> bool:
        return self.endpoint == "chat"

    # ------------------------------------------------------------ HTTP with retries

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date; fall back to our own schedule
        cap = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return random.uniform(cap / 2, cap)  # "equal jitter": never zero, spreads clients

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries on 429/5xx/timeouts/connection errors; returns the JSON."""
        httpx = self._httpx
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self._sem:
                    r = self._client.post(path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise LLMBackendError(f"{self.base_url}{path}: response is not JSON: "
                                              f"{r.text[:200]!r}") from None
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in RETRY_STATUS and r.status_code < 500:
                    raise LLMBackendError(f"{self.base_url}{path}: {last}")
                retry_after = r.headers.get("retry-after")
            if attempt < self.max_retries:
                self.retries += 1
                self._sleep(self._backoff(attempt, retry_after))
        raise LLMBackendError(f"{self.base_url}{path}: failed after {self.max_retries + 1} "
                              f"attempts; last error: {last}")

    # ------------------------------------------------------------ LLMBackend

    def _request(self, prompt: Prompt, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.endpoint == "chat":
            msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            return "/chat/completions", {"model": self.model_id, "messages": msgs, **extra}
        return "/completions", {"model": self.model_id, "prompt": plain_prompt(prompt), **extra}

    def _prompt_len(self, prompt: Prompt) -> int:
        return self.count_tokens(plain_prompt(prompt))

    def generate(self, prompt: Prompt, *, max_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> Generation:
        extra: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0}
        if stop:
            extra["stop"] = list(stop)
        path, payload = self._request(prompt, extra)
        data = self.post(path, payload)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise LLMBackendError(f"{self.base_url}{path}: unexpected response {str(data)[:300]}") \
                from None
        text = text or ""
        usage = data.get("usage") or {}
        pt = usage.get("prompt_tokens")
        ct = usage.get("completion_tokens")
        return Generation(cut_at_stop(text, stop),
                          int(pt) if pt is not None else self._prompt_len(prompt),
                          int(ct) if ct is not None else self.count_tokens(text))

    def next_token_logprobs(self, prompt: Prompt, candidates: Sequence[str]) -> NextTokenScores:
        k = self.top_logprobs
        if self.endpoint == "chat":
            extra = {"max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": k}
        else:
            extra = {"max_tokens": 1, "temperature": 0.0, "logprobs": k}
        path, payload = self._request(prompt, extra)
        data = self.post(path, payload)
        top = _top_logprobs(data, path)
        if not top:
            raise LLMBackendError(f"{self.base_url}{path}: the server returned no log-probs; "
                                  "pointwise scoring needs a server that supports logprobs")
        floor = min(top.values())
        out: dict[str, float] = {}
        missing: list[str] = []
        for c in candidates:
            vals = [lp for tok, lp in top.items() if tok.strip() == c]
            if vals:
                out[c] = logsumexp(vals)
            else:
                out[c] = floor
                missing.append(c)
        usage = data.get("usage") or {}
        pt = usage.get("prompt_tokens")
        return NextTokenScores(out, int(pt) if pt is not None else self._prompt_len(prompt), missing)

    def count_tokens(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False))
        return len(_APPROX_TOKEN.findall(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        if self._tok is not None:
            ids = self._tok.encode(text, add_special_tokens=False)
            return text if len(ids) <= max_tokens else self._tok.decode(ids[:max_tokens])
        matches = list(_APPROX_TOKEN.finditer(text))
        return text if len(matches) <= max_tokens else text[: matches[max_tokens - 1].end()]

    def cache_identity(self) -> str:
        # the served model name is the identity; the endpoint decides how prompts are formatted
        return f"{super().cache_identity()}:{self.endpoint}"

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "base_url": self.base_url, "endpoint": self.endpoint,
                "max_concurrency": self.max_concurrency, "retries": self.retries,
                "exact_token_counts": self._tok is not None}

    def close(self) -> None:
        self._client.close()


def _top_logprobs(data: dict[str, Any], path: str) -> dict[str, float]:
    """Token -> log-prob of the first generated position, from either response shape."""
    try:
        lp = data["choices"][0].get("logprobs")
    except (KeyError, IndexError, TypeError, AttributeError):
        return {}
    if not lp:
        return {}
    out: dict[str, float] = {}
    if path == "/chat/completions":
        content = lp.get("content") or []
        if content:
            first = content[0]
            for t in first.get("top_logprobs") or []:
                out[t["token"]] = max(out.get(t["token"], -1e30), float(t["logprob"]))
            out.setdefault(first["token"], float(first["logprob"]))
    else:
        tops = lp.get("top_logprobs") or []
        if tops and tops[0]:
            out = {t: float(v) for t, v in tops[0].items()}
    return out


def api_key_from_env(var: str | None) -> str | None:
    return os.environ.get(var) if var else None
