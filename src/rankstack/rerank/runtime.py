"""CPU/GPU runtime settings shared by every neural scorer: threads, dtype, device.

The dtype vocabulary and its resolution live in :mod:`rankstack.hf_loading` (one for all of
rankstack); this module holds the per-scorer settings object and the thread knob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rankstack.errors import ConfigError
from rankstack.hf_loading import autocast, normalize_dtype, resolve_dtype

#: ``RuntimeSettings.dtype`` values: a name of :data:`rankstack.hf_loading.DTYPES`.
DType = str


@dataclass
class RuntimeSettings:
    """CPU/GPU runtime settings shared by every neural scorer.

    ``threads``: torch intra-op threads (default 1; ``0`` leaves torch's default).
    ``dtype``: a name of :data:`rankstack.hf_loading.DTYPES` (aliases accepted and normalised):
    ``auto`` (bf16 where native, else fp32), ``fp32``, ``bf16``, ``fp16`` or ``bf16-mixed``
    (fp32 weights, bf16 autocast: wrap forward passes in :meth:`autocast`).
    ``device``: ``cpu`` (default) or e.g. ``cuda``. ``fp32_head``: compute the scoring head
    (classification layer, or the answer tokens' rows of an LM head) in float32 when the
    weights are bf16/fp16, so scores are not quantised into ties (default on).
    """

    threads: int = 1
    dtype: DType = "auto"
    device: str = "cpu"
    fp32_head: bool = True

    def __post_init__(self) -> None:
        self.dtype = normalize_dtype(self.dtype)
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise ConfigError(f"threads must be an integer >= 0, not {self.threads!r}")
        if not isinstance(self.fp32_head, bool):
            raise ConfigError(f"fp32_head must be true or false, not {self.fp32_head!r}")

    def apply(self) -> None:
        """Set the thread count (process-wide in torch)."""
        apply_threads(self.threads)

    def torch_dtype(self) -> Any:
        """dtype of the weights (fp32 for ``bf16-mixed``)."""
        return resolve_dtype(self.dtype, self.device)

    def autocast(self) -> Any:
        """Context for forward passes: bf16 autocast for ``bf16-mixed``, else a no-op."""
        return autocast(self.dtype, self.device)


def apply_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` (``0`` = leave as is)."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)




def _inputs_to_fp32(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.float() if hasattr(a, "is_floating_point") and a.is_floating_point() else a
                 for a in args)


#: Attributes that hold the final scoring layer of transformers sequence-classification models
#: (BERT/ELECTRA/RoBERTa/DeBERTa: ``classifier``; Llama/Qwen/Mistral: ``score``).
CLASSIFIER_HEADS = ("classifier", "score")


def fp32_classifier_head(model: Any) -> str | None:
    """Run ``model``'s classification head in float32 when the weights are half precision.

    The head module is cast to float32 and its inputs are cast on the way in (a forward
    pre-hook), so the output logits are float32 computed from float32 weights: bf16 keeps its
    speed in the body while scores stop collapsing into bf16 steps (issue 15.3). Returns the
    attribute name of the head, or ``None`` when the model has none of
    :data:`CLASSIFIER_HEADS` or is already float32.
    """
    import torch

    for name in CLASSIFIER_HEADS:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            params = list(head.parameters())
            if not params or params[0].dtype == torch.float32:
                return None
            head.float()
            head.register_forward_pre_hook(_inputs_to_fp32)
            return name
    return None


class TokenRowsFP32:
    """float32 logits of a few vocabulary entries, computed from the LM head's input.

    A forward pre-hook on ``model.get_output_embeddings()`` keeps its input (the final hidden
    states, usually of one position); :meth:`logits` then computes ``h @ W[ids].T (+ b[ids])``
    in float32. The full half-precision LM head still runs (its output is unused here), so this
    costs a ``(b, k, d)`` product while sparing a float32 copy of the whole vocabulary matrix
    (tied T5 embeddings, large LLM vocabularies).
    """

    def __init__(self, model: Any, token_ids: list[int]) -> None:
        import torch

        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if not isinstance(head, torch.nn.Linear):
            raise ConfigError(f"{type(model).__name__} has no linear output embedding layer")
        self.head = head
        self.token_ids = list(token_ids)
        self._hidden: Any = None
        head.register_forward_pre_hook(self._keep)

    def _keep(self, _module: Any, args: tuple[Any, ...]) -> None:
        self._hidden = args[0]

    def logits(self) -> Any:
        """``(b, s, k)`` float32 logits of :attr:`token_ids` from the last forward pass."""
        import torch

        if self._hidden is None:
            raise RuntimeError("no forward pass has run through the LM head")
        h, self._hidden = self._hidden, None
        ids = torch.as_tensor(self.token_ids, device=h.device)
        w = self.head.weight.index_select(0, ids).float()
        b = self.head.bias.index_select(0, ids).float() if self.head.bias is not None else None
        return torch.nn.functional.linear(h.float(), w, b)
