"""Encoder cross-encoders (BERT / ELECTRA / MiniLM ``AutoModelForSequenceClassification``).

Score semantics, decided by the model's number of labels:

* 1 logit  -> the raw logit (``score_kind = "logit"``), as sentence-transformers'
  ``CrossEncoder`` before its sigmoid;
* 2 logits -> log-softmax of the relevant class, index 1 (``score_kind = "log_prob"``),
  as monoBERT / monoELECTRA.

More labels are a :class:`~rankstack.errors.ConfigError`. :class:`TransformerScorer` holds
what every transformers-based encoder scorer shares (loading, runtime settings, token
budgets, the torch / ONNX Runtime backends) and is reused by the bi-encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from rankstack.errors import ConfigError, require
from rankstack.hf_loading import load_model, load_tokenizer
from rankstack.rerank.base import Scorer
from rankstack.rerank.batching import Batch, run_batched
from rankstack.rerank.runtime import RuntimeSettings, fp32_classifier_head
from rankstack.rerank.tokens import Encoded, PairEncoder

log = logging.getLogger("rankstack.rerank")

Backend = Literal["torch", "onnx"]


class TransformerScorer(Scorer):
    """Shared machinery of transformers encoder scorers.

    Settings: ``batch_size``; token budgets ``query_length`` / ``doc_length`` /
    ``max_length`` (see :class:`~rankstack.rerank.tokens.PairEncoder`); ``threads``,
    ``dtype`` (auto|fp32|bf16|fp16|bf16-mixed, see :mod:`rankstack.hf_loading`), ``device``;
    ``fp32_head`` (default on: the classification head runs in float32 under bf16/fp16
    weights, so scores are not quantised into ties); ``backend`` (``torch`` or ``onnx``: exported once
    and cached, fp32), ``quantize`` (``None`` or ``"int8"``: ONNX dynamic quantization, which
    changes rankings; measure it with ``benchmarks/rerank_throughput.py`` before use),
    ``cache_dir`` for ONNX files, ``chunk_size`` (inputs length-sorted together),
    ``padding_side`` (default: the tokenizer's; left padding passes position ids counted
    over real tokens); ``truncation`` (``budgets`` or ``longest_first``) and
    ``prefix_in_budget`` (see :class:`~rankstack.rerank.tokens.PairEncoder`);
    ``trust_remote_code`` (models whose code lives in their repository, e.g. nomic-embed);
    ``lora`` (a PEFT adapter merged into ``model``, the base: e.g. RepLLaMA's adapter over
    Llama-2-7B; the scorer is then named after the adapter).
    Subclasses set :attr:`auto_class` and implement :meth:`_outputs` / :meth:`score_pairs`.
    """

    family: ClassVar[str] = ""
    score_kind: ClassVar[str] = ""
    #: transformers Auto class name loaded by from_pretrained
    auto_class: ClassVar[str] = "AutoModel"
    #: ONNX output exported for this scorer ("logits" or "last_hidden_state")
    onnx_output: ClassVar[str] = "last_hidden_state"

    def __init__(self, model: str, *, batch_size: int = 32, query_length: int | None = None,
                 doc_length: int | None = None, max_length: int | None = None,
                 threads: int = 1, dtype: str = "auto", device: str = "cpu",
                 backend: Backend = "torch", quantize: str | None = None,
                 cache_dir: str | None = None, chunk_size: int = 8192,
                 padding_side: str | None = None, model_kwargs: dict[str, Any] | None = None,
                 fp32_head: bool = True, truncation: str = "budgets",
                 prefix_in_budget: bool = False, trust_remote_code: bool = False,
                 lora: str | None = None) -> None:
        require("torch", "neural", "neural re-rankers")
        require("transformers", "neural", "neural re-rankers")
        if backend not in ("torch", "onnx"):
            raise ConfigError(f"backend must be 'torch' or 'onnx', not {backend!r}")
        if quantize not in (None, "int8"):
            raise ConfigError(f"quantize must be None or 'int8', not {quantize!r}")
        if quantize and backend != "onnx":
            raise ConfigError("quantize='int8' needs backend='onnx'")
        if backend == "onnx" and dtype in ("bf16", "bf16-mixed"):
            raise ConfigError("the ONNX backend runs fp32 (use dtype auto or fp32)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.name = model
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.backend = backend
        self.quantize = quantize
        self.runtime = RuntimeSettings(threads, "fp32" if backend == "onnx" else dtype,
                                       device, fp32_head)
        self.runtime.apply()
        model_kwargs = dict(model_kwargs or {})
        if trust_remote_code:
            model_kwargs["trust_remote_code"] = True
        self.tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.torch_dtype = self.runtime.torch_dtype()
        self.model = self._load_model(model, model_kwargs)
        if lora:
            peft = require("peft", "train", "LoRA adapters")
            self.model = peft.PeftModel.from_pretrained(self.model, lora).merge_and_unload()
            self.model.eval()
            self.name = str(lora)
        self.config = self.model.config
        #: attribute of the classification head run in float32 (None: none, or fp32 weights)
        self.fp32_head = fp32_classifier_head(self.model) if fp32_head else None
        self._check_model()
        # A rankstack-trained student records the budgets it was trained with; use the same
        # passage length at inference unless told otherwise.
        query_length = query_length or getattr(self.config, "rankstack_query_length", None)
        doc_length = doc_length or getattr(self.config, "rankstack_doc_length", None)
        self.encoder = PairEncoder.from_tokenizer(
            self.tokenizer, query_length=query_length, doc_length=doc_length,
            max_length=max_length, model_config=self.config, truncation=truncation,
            prefix_in_budget=prefix_in_budget)
        self.pad_token_id = self._pad_id()
        if padding_side not in (None, "left", "right"):
            raise ConfigError(f"padding_side must be left or right, not {padding_side!r}")
        self.padding_side = (padding_side or getattr(self.tokenizer, "padding_side", "right")
                             or "right")
        import inspect

        self._takes_position_ids = "position_ids" in inspect.signature(
            self.model.forward).parameters
        self._onnx = None
        if backend == "onnx":
            if self.padding_side == "left":
                raise ConfigError("the ONNX backend supports right padding only")
            from rankstack.rerank.onnx_backend import OnnxModel

            self._onnx = OnnxModel.for_model(
                self.model, model, output=self.onnx_output,
                with_token_type_ids=self.encoder.use_token_type_ids, threads=threads,
                quantize=quantize, cache_dir=cache_dir)

    @classmethod
    def from_pretrained(cls, model: str, **settings: Any) -> TransformerScorer:
        """Load by hub name or local path (``cls(model, **settings)``)."""
        return cls(model, **settings)

    @property
    def counts(self):
        """Cumulative truncation counts of this scorer's inputs."""
        return self.encoder.counts

    # -- hooks -------------------------------------------------------------------------------
    def _load_model(self, model: str, model_kwargs: dict[str, Any]) -> Any:
        """The transformers model (overridden by checkpoint layouts of other libraries)."""
        return load_model(self.auto_class, model, dtype=self.runtime.dtype,
                          device=self.runtime.device, **model_kwargs)

    def _check_model(self) -> None:
        """Validate the loaded model (e.g. number of labels)."""

    def _pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        if pid is None:
            pid = getattr(self.config, "pad_token_id", None)
        if pid is None:
            pid = self.tokenizer.eos_token_id
        if pid is None:
            raise ConfigError(f"{self.name}: tokenizer has no pad token and no eos token")
        return int(pid)

    # -- running ----------------------------------------------------------------------------
    def _forward(self, batch: Batch) -> np.ndarray:
        """The model's ``onnx_output`` for a batch, as float32 numpy."""
        if self._onnx is not None:
            return self._onnx.run(batch.arrays())
        import torch

        with torch.inference_mode(), self.runtime.autocast():
            arrays = batch.arrays()
            if batch.padding_side == "left" and self._takes_position_ids:
                arrays["position_ids"] = batch.position_ids()
            inputs = {k: torch.from_numpy(v).to(self.runtime.device) for k, v in arrays.items()}
            out = self.model(**inputs)
            t = getattr(out, self.onnx_output)
            return t.float().cpu().numpy()

    def _run(self, n: int, encode: Any, post: Any) -> np.ndarray:
        self.runtime.apply()
        return run_batched(n, encode, lambda b: post(self._forward(b), b),
                           batch_size=self.batch_size, pad_token_id=self.pad_token_id,
                           padding_side=self.padding_side, chunk_size=self.chunk_size)

    def set_threads(self, threads: int) -> None:
        """Change the thread count (torch, and the ONNX session if any)."""
        self.runtime = RuntimeSettings(threads, self.runtime.dtype, self.runtime.device,
                                       self.runtime.fp32_head)
        self.runtime.apply()
        if self._onnx is not None:
            from rankstack.rerank.onnx_backend import OnnxModel

            o = self._onnx
            self._onnx = OnnxModel(o.path, output=o.output, input_names=o.input_names,
                                   threads=threads)

    def close(self) -> None:
        self._onnx = None


class CrossEncoderScorer(TransformerScorer):
    """Cross-encoder: ``[CLS] query [SEP] passage [SEP]`` -> relevance score.

    1 output label -> raw logit (``"logit"``); 2 labels -> log P(relevant) with the
    relevant class at index 1 (``"log_prob"``).
    """

    family: ClassVar[str] = "cross-encoder"
    score_kind: ClassVar[str] = "logit"
    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"
    onnx_output: ClassVar[str] = "logits"

    def _check_model(self) -> None:
        n = int(getattr(self.config, "num_labels", 1))
        if n == 1:
            self.score_kind = "logit"  # type: ignore[misc]
        elif n == 2:
            self.score_kind = "log_prob"  # type: ignore[misc]
        else:
            raise ConfigError(f"{self.name}: a cross-encoder needs 1 or 2 output labels, "
                              f"this model has {n}")

    def encode(self, queries: Sequence[str], passages: Sequence[str]) -> list[Encoded]:
        """The exact model inputs for these pairs (token budgets applied, counted)."""
        return self.encoder.encode_pairs(queries, passages)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        q, p = list(queries), list(passages)
        return self._run(len(q), lambda a, b: self.encode(q[a:b], p[a:b]), _scores_from_logits)


def _scores_from_logits(logits: np.ndarray, batch: Batch) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return logits.reshape(-1)
    # log-softmax of class 1, computed stably
    m = logits.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
    return logits[:, 1] - lse
