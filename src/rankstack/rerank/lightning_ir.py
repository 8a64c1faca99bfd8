"""Cross-encoders saved by lightning-ir (e.g. the Rank-DistiLLM ``webis/monoelectra-*`` models).

lightning-ir saves a cross-encoder as its backbone (``AutoModel`` weights without a prefix:
``embeddings.*``, ``encoder.*``) plus its own head, and writes its own model type into
``config.json``: ``"model_type": "mono"`` (or ``"cross-encoder"``), ``"backbone_model_type":
"electra"``, ``pooling_strategy`` (``first``/``mean``/``max``/``sum``/``bert_pool``),
``linear_bias``, ``scoring_strategy`` (``rank``: one output, the raw relevance logit;
``mono``: two outputs, log-softmax of class 1), ``query_length`` / ``doc_length``. The head is
``linear.weight`` (+ ``linear.bias``), after ``bert_pool.0.*`` for the ``bert_pool`` strategy.
``AutoModelForSequenceClassification`` cannot load this layout (unknown model type), so family
``lightning-ir`` rebuilds the backbone from ``backbone_model_type`` and loads the head itself,
scoring as lightning-ir's ``MonoModel.forward`` does (reference:
``lightning_ir/models/cross_encoders/mono.py``, ``modeling_utils/embedding_post_processing.py``).

Inputs: ``[CLS] query [SEP] passage [SEP]`` with the query cut to ``query_length`` and the
passage to ``doc_length`` tokens (the checkpoint's own values unless overridden), as
lightning-ir's ``CrossEncoderTokenizer``; rankstack cuts in token space where lightning-ir
decodes the cut ids back to text and re-tokenizes (identical for WordPiece text in practice).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from rankstack.errors import ConfigError, require
from rankstack.hf_loading import check_model_path, model_file, resolve_dtype
from rankstack.rerank.cross_encoder import CrossEncoderScorer

MODEL_TYPES = ("mono", "cross-encoder")
POOLINGS = ("first", "mean", "max", "sum", "bert_pool")


def read_lightning_ir_config(model: str) -> dict[str, Any]:
    """``config.json`` of a lightning-ir cross-encoder, checked (ConfigError naming the key)."""
    f = model_file(model, "config.json")
    if f is None:
        raise ConfigError(f"{model}: no config.json")
    cfg = json.loads(f.read_text(encoding="utf-8"))
    where = f"{model}/config.json"
    if cfg.get("model_type") not in MODEL_TYPES or not cfg.get("backbone_model_type"):
        raise ConfigError(f"{where}: not a lightning-ir cross-encoder (needs 'model_type' in "
                          f"{', '.join(MODEL_TYPES)} and 'backbone_model_type'; found "
                          f"{cfg.get('model_type')!r} / {cfg.get('backbone_model_type')!r})")
    pooling = cfg.get("pooling_strategy", "first")
    if cfg.get("_bert_pool"):
        pooling = "bert_pool"
    if pooling not in POOLINGS:
        raise ConfigError(f"{where}: 'pooling_strategy' must be one of {', '.join(POOLINGS)}, "
                          f"not {pooling!r}")
    scoring = cfg.get("scoring_strategy", "rank")
    if scoring not in ("rank", "mono"):
        raise ConfigError(f"{where}: 'scoring_strategy' must be rank or mono, not {scoring!r}")
    cfg["pooling_strategy"], cfg["scoring_strategy"] = pooling, scoring
    return cfg


def _head_module(cfg: dict[str, Any], backbone: Any) -> Any:
    import torch

    class LightningIRCrossEncoder(torch.nn.Module):
        """Backbone + pooling + (bert_pool) + linear, returning ``logits`` like HF heads."""

        def __init__(self) -> None:
            super().__init__()
            hidden = backbone.config.hidden_size
            self.backbone = backbone
            self.config = backbone.config
            self.pooling = cfg["pooling_strategy"]
            self.bert_pool = (torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh())
                              if self.pooling == "bert_pool" else torch.nn.Identity())
            n_out = 2 if cfg["scoring_strategy"] == "mono" else 1
            #: lightning-ir's ``linear`` layer (named ``classifier`` so the fp32 head finds it)
            self.classifier = torch.nn.Linear(hidden, n_out, bias=bool(cfg.get("linear_bias")))

        def forward(self, input_ids: Any, attention_mask: Any = None,
                    token_type_ids: Any = None) -> Any:
            kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            h = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                              **kw).last_hidden_state
            m = (attention_mask if attention_mask is not None
                 else torch.ones_like(input_ids)).unsqueeze(-1).to(h.dtype)
            if self.pooling in ("first", "bert_pool"):
                v = h[:, 0]
            elif self.pooling == "max":
                v = h.masked_fill(m == 0, float("-inf")).amax(dim=1)
            else:
                v = (h * m).sum(dim=1)
                if self.pooling == "mean":
                    v = v / m.sum(dim=1)
            return _Out(self.classifier(self.bert_pool(v)))

    return LightningIRCrossEncoder()


class _Out:
    __slots__ = ("logits",)

    def __init__(self, logits: Any) -> None:
        self.logits = logits


def load_lightning_ir_cross_encoder(model: str, *, dtype: Any = "fp32", device: str = "cpu"
                                    ) -> Any:
    """The torch module of a lightning-ir cross-encoder directory (see the module doc)."""
    require("torch", "neural", "lightning-ir cross-encoders")
    transformers = require("transformers", "neural", "lightning-ir cross-encoders")
    from safetensors.torch import load_file

    cfg = read_lightning_ir_config(model)
    path = Path(check_model_path(model))
    backbone_type = cfg["backbone_model_type"]
    own = set(read_config_keys())
    bb_cfg = transformers.AutoConfig.for_model(
        backbone_type, **{k: v for k, v in cfg.items()
                          if k not in own and k not in ("model_type", "architectures")})
    if getattr(bb_cfg, "is_encoder_decoder", False):
        raise ConfigError(f"{model}: lightning-ir encoder-decoder backbones "
                          f"({backbone_type}) are not supported; use family monot5/rankt5")
    if hasattr(bb_cfg, "add_pooling_layer"):
        bb_cfg.add_pooling_layer = False
    backbone = transformers.AutoModel.from_config(bb_cfg)
    module = _head_module(cfg, backbone)
    weights = path / "model.safetensors"
    if weights.is_file():
        state = load_file(str(weights))
    elif (path / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ConfigError(f"{model}: no model.safetensors or pytorch_model.bin")
    prefix = f"{getattr(backbone, 'base_model_prefix', '')}."
    mapped: dict[str, Any] = {}
    for k, v in state.items():
        if k.startswith("linear."):
            mapped["classifier." + k[len("linear."):]] = v
        elif k.startswith("bert_pool."):
            mapped[k] = v
        else:
            mapped["backbone." + (k[len(prefix):] if k.startswith(prefix) else k)] = v
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    # position ids are buffers some backbones do not save; everything else must be there
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConfigError(f"{model}: weights do not match a lightning-ir {cfg['model_type']} "
                          f"cross-encoder (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return module.to(dtype=resolve_dtype(dtype, device), device=device).eval()


def read_config_keys() -> tuple[str, ...]:
    """config.json keys that belong to lightning-ir, not to the backbone."""
    return ("backbone_model_type", "query_length", "doc_length", "pooling_strategy",
            "linear_bias", "scoring_strategy", "_bert_pool", "tokenizer_pattern",
            "transformers_version", "dtype", "torch_dtype")


class LightningIRCrossEncoderScorer(CrossEncoderScorer):
    """Family ``lightning-ir``: a lightning-ir-saved cross-encoder (monoELECTRA); the score is
    the raw relevance logit (``scoring_strategy: rank``) or log P(relevant) (``mono``)."""

    family: ClassVar[str] = "lightning-ir"

    def __init__(self, model: str, *, query_length: int | None = None,
                 doc_length: int | None = None, **settings: Any) -> None:
        if settings.get("backend", "torch") != "torch":
            raise ConfigError("family lightning-ir runs on the torch backend only")
        cfg = read_lightning_ir_config(model)
        #: the checkpoint's budgets (lightning-ir's tokenizer settings), unless overridden
        self.lightning_ir_config = {k: cfg.get(k) for k in read_config_keys()[:6]}
        super().__init__(model, query_length=query_length or cfg.get("query_length") or 32,
                         doc_length=doc_length or cfg.get("doc_length") or 512, **settings)

    def _load_model(self, model: str, model_kwargs: dict[str, Any]) -> Any:
        if model_kwargs:
            raise ConfigError(f"family lightning-ir takes no model_kwargs ({sorted(model_kwargs)})")
        return load_lightning_ir_cross_encoder(model, dtype=self.runtime.dtype,
                                               device=self.runtime.device)

    def _check_model(self) -> None:
        n = self.model.classifier.out_features
        self.score_kind = "logit" if n == 1 else "log_prob"  # type: ignore[misc]
