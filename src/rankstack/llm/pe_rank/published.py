"""Loading a PE-Rank checkpoint in the layout the PE-Rank code publishes
(``liuqi6777/pe-rank-mistral-jina``; ``pe_rank/src/modeling/builder.py``).

That layout is one Hugging Face directory:

* ``config.json``: the base LLM's config with ``model_type`` ``embed_mistral`` or
  ``embed_llama`` (the reference registers its own classes under these names), plus
  ``encoder_name`` (the passage encoder, e.g. ``jinaai/jina-embeddings-v2-base-en``),
  ``encoder_pooling`` (``mean``), ``projector_type`` (``mlp2x_gelu``) and ``embedding_size``;
* the weights (``model.safetensors`` / ``pytorch_model.bin``, possibly sharded with an index):
  the LLM's own keys, the projector under ``model.projector.{0,2}.*`` and the frozen encoder
  under ``model.encoder.encoder.*`` (not needed here: the encoder is loaded by name);
* optionally ``projector.bin`` (what the reference's projector-only stage writes);
* the tokenizer, with the added tokens ``<PLACEHOLDER>`` and ``<RANK>`` (unused here: slots
  are embedding positions, not tokens).

:func:`load_published` maps it onto :class:`~rankstack.llm.pe_rank.PERankModel` with the
reference's inference behaviour: the reference prompt (``layout="reference"``), BOS forced
before the first output passage, raw (un-normalised) hidden states scored against the
projected embeddings, and the encoder at 512 tokens with mean pooling and L2 normalisation.
The LoRA layout (``adapter_config.json`` + ``non_lora_trainables.bin``) is not read: merge it
with the reference's builder first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, InputError, require

#: the reference's model types -> the transformers model type of the base LLM
MODEL_TYPES = {"embed_mistral": "mistral", "embed_llama": "llama"}
#: the reference's inference settings (``pe_rank/src/ranker.py``, ``evaluate.py``)
REFERENCE = {"layout": "reference", "normalize_hidden": False, "bos_before_output": True,
             "max_passage_tokens": 512}
_CONFIG_ONLY = ("model_type", "architectures", "auto_map", "encoder_name", "encoder_pooling",
                "projector_type", "embedding_size", "use_proj", "tune_mlp_adapter",
                "freeze_backbone", "tokenizer_padding_side", "tokenizer_model_max_length")


def read_config(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``config.json`` of a published-layout directory, or None if ``path`` is not one."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        d = json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=cfg, line=exc.lineno) from None
    return d if isinstance(d, dict) and d.get("model_type") in MODEL_TYPES else None


def is_published_layout(path: str | os.PathLike[str]) -> bool:
    return read_config(path) is not None


def _weight_files(d: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (d / index).is_file():
            shards = json.loads((d / index).read_text(encoding="utf-8"))["weight_map"].values()
            return [d / s for s in dict.fromkeys(shards)]
    return [p for p in (d / "model.safetensors", d / "pytorch_model.bin") if p.is_file()]


def _load_state(path: Path) -> dict[str, Any]:
    torch = require("torch", "neural", "PE-Rank")
    if path.suffix == ".safetensors":
        st = require("safetensors.torch", "neural", "loading PE-Rank", package="safetensors")
        return st.load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def projector_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The projector's weights, keyed ``net.0.weight`` ... as :class:`Projector` names them.

    Read from ``projector.bin`` if present, else from the model's weight files (keys
    ``...projector.<i>.<weight|bias>``).
    """
    d = Path(path)
    files = [d / "projector.bin"] if (d / "projector.bin").is_file() else _weight_files(d)
    if not files:
        raise InputError("no weight files (model.safetensors, pytorch_model.bin, projector.bin)",
                         path=d)
    out: dict[str, Any] = {}
    for f in files:
        for k, v in _load_state(f).items():
            if "projector." in k and "encoder" not in k:
                out["net." + k.split("projector.", 1)[1]] = v
    if not out:
        raise InputError("no projector weights (keys '...projector.<i>.weight') in "
                         f"{', '.join(f.name for f in files)}", path=d)
    return out


def load_published(path: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "fp32",
                   with_content: bool = False):
    """A :class:`PERankModel` from a published-layout directory (see module doc).

    Returns ``(model, encoder_name)``; the caller builds the
    :class:`~rankstack.llm.pe_rank.PassageEmbedder` (``encoder_name`` at 512 tokens, or a local
    copy of it). Only the ``mlp2x_gelu`` projector and ``mean`` encoder pooling are supported
    (what the published model uses); anything else is a ConfigError.
    """
    transformers = require("transformers", "neural", "PE-Rank")
    from rankstack.hf_loading import load_model, load_tokenizer
    from rankstack.llm.pe_rank.model import PERankConfig, PERankModel
    from rankstack.llm.pe_rank.projector import Projector

    d = Path(path)
    raw = read_config(d)
    if raw is None:
        raise InputError(f"not a published PE-Rank checkpoint (config.json model_type must be "
                         f"one of {', '.join(MODEL_TYPES)})", path=d / "config.json")
    if (d / "adapter_config.json").is_file():
        raise ConfigError(f"{d} is the reference's LoRA layout; merge the adapters into the "
                          f"model first (pe_rank/src/modeling/builder.py does it)")
    for key in ("encoder_name", "embedding_size", "hidden_size"):
        if key not in raw:
            raise InputError("missing required key", path=d / "config.json", field=key)
    if raw.get("projector_type", "linear") != "mlp2x_gelu":
        raise ConfigError(f"{d}: projector_type {raw.get('projector_type', 'linear')!r} is not "
                          f"supported (only mlp2x_gelu, the published one)")
    if raw.get("encoder_pooling", "mean") != "mean":
        raise ConfigError(f"{d}: encoder_pooling {raw['encoder_pooling']!r} is not supported "
                          f"(only mean, the published one)")
    base = {k: v for k, v in raw.items() if k not in _CONFIG_ONLY}
    llm_config = transformers.AutoConfig.for_model(MODEL_TYPES[raw["model_type"]], **base)
    lm = load_model("AutoModelForCausalLM", str(d), dtype=dtype, device=device,
                    config=llm_config)
    tok = load_tokenizer(str(d))
    cfg = PERankConfig(d_emb=int(raw["embedding_size"]), d_llm=int(raw["hidden_size"]),
                       embedder=str(raw["encoder_name"]), llm=str(d), with_content=with_content,
                       stages=["alignment", "ranking"], **REFERENCE)
    proj = Projector(cfg.d_emb, cfg.d_llm)
    proj.load_state_dict({k: v.float() for k, v in projector_state(d).items()})
    proj.to(device=device, dtype=lm.get_input_embeddings().weight.dtype)
    return PERankModel(lm, tok, proj, cfg), str(raw["encoder_name"])
