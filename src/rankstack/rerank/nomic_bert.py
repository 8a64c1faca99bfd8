"""NomicBERT (nomic-embed-text) in plain PyTorch, with its weights read from a GGUF file.

The same weights llama.cpp runs, but through torch's CPU kernels (bf16 on CPUs with AMX),
which on these CPUs is far faster than the portable llama.cpp build. transformers cannot load
the model offline (its modelling code is remote code), so the architecture is written out
here: BERT-style post-norm blocks with rotary position embeddings (NeoX layout), a fused QKV
projection and a SwiGLU MLP, no biases in the linear layers; mean pooling. The tokenizer is
bert-base-uncased's WordPiece, the vocabulary the GGUF file holds (checked at load).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rankstack.errors import ConfigError, require

torch = require("torch", "neural", "NomicBERT")
F = torch.nn.functional


def _field(reader: Any, key: str) -> Any:
    f = reader.fields[key]
    value = f.parts[f.data[0]]
    return value.tobytes().decode() if value.dtype == np.uint8 else value[0].item()


class NomicBert(torch.nn.Module):
    """Encoder returning last hidden states ``(b, s, h)``."""

    def __init__(self, tensors: dict[str, np.ndarray], n_layers: int, n_heads: int,
                 eps: float, rope_base: float) -> None:
        super().__init__()

        def p(name: str) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(
                tensors[name], dtype=np.float32)), requires_grad=False)

        self.word = p("token_embd.weight")
        self.token_type = p("token_types.weight")
        self.emb_norm = (p("token_embd_norm.weight"), p("token_embd_norm.bias"))
        self.params = torch.nn.ParameterList([self.emb_norm[0], self.emb_norm[1]])
        self.layers = []
        for i in range(n_layers):
            names = ("attn_qkv.weight", "attn_output.weight", "attn_output_norm.weight",
                     "attn_output_norm.bias", "ffn_up.weight", "ffn_gate.weight",
                     "ffn_down.weight", "layer_output_norm.weight", "layer_output_norm.bias")
            layer = [p(f"blk.{i}.{n}") for n in names]
            self.params.extend(layer)
            self.layers.append(layer)
        self.n_heads = n_heads
        self.eps = eps
        self.rope_base = rope_base
        self.hidden = self.word.shape[1]

    def _rope(self, s: int, d: int, dtype: Any) -> tuple[Any, Any]:
        inv = 1.0 / (self.rope_base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        freqs = torch.outer(torch.arange(s, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def _rotate(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        b, s = input_ids.shape
        h, nh = self.hidden, self.n_heads
        d = h // nh
        dtype = self.word.dtype
        x = self.word[input_ids] + self.token_type[0]
        x = F.layer_norm(x, (h,), self.emb_norm[0], self.emb_norm[1], self.eps)
        cos, sin = self._rope(s, d, dtype)
        mask = attention_mask.bool()[:, None, None, :]
        for (qkv_w, out_w, n1w, n1b, up_w, gate_w, down_w, n2w, n2b) in self.layers:
            qkv = F.linear(x, qkv_w).view(b, s, 3, nh, d).permute(2, 0, 3, 1, 4)
            q, k, v = self._rotate(qkv[0], cos, sin), self._rotate(qkv[1], cos, sin), qkv[2]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               scale=1.0 / math.sqrt(d))
            a = a.transpose(1, 2).reshape(b, s, h)
            x = F.layer_norm(x + F.linear(a, out_w), (h,), n1w, n1b, self.eps)
            m = F.linear(F.silu(F.linear(x, gate_w)) * F.linear(x, up_w), down_w)
            x = F.layer_norm(x + m, (h,), n2w, n2b, self.eps)
        return x


def load_nomic_bert(path: str, dtype: Any = None) -> tuple[NomicBert, list[str]]:
    """The model of a ``nomic-bert`` GGUF file and its vocabulary (GGUF token strings)."""
    gguf = require("gguf", "gguf", "reading GGUF weights", package="gguf")
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "nomic-bert":
        raise ConfigError(f"{path}: GGUF architecture {arch!r}; the torch backend runs "
                          f"nomic-bert only (use backend: llama_cpp)")
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    kinds = {int(t.tensor_type) for t in reader.tensors}
    if not kinds <= {0, 1}:  # F32, F16
        raise ConfigError(f"{path}: quantised GGUF tensors; the torch backend reads F32/F16 "
                          f"only (use backend: llama_cpp)")
    model = NomicBert(tensors, int(_field(reader, "nomic-bert.block_count")),
                      int(_field(reader, "nomic-bert.attention.head_count")),
                      float(_field(reader, "nomic-bert.attention.layer_norm_epsilon")),
                      float(_field(reader, "nomic-bert.rope.freq_base")))
    if dtype is not None:
        model = model.to(dtype)
    f = reader.fields["tokenizer.ggml.tokens"]
    vocab = [bytes(f.parts[i]).decode() for i in f.data]
    return model.eval(), vocab


def check_bert_vocab(gguf_vocab: list[str], tokenizer: Any) -> None:
    """ConfigError unless the GGUF WordPiece vocabulary is the tokenizer's (same ids)."""
    tv = tokenizer.get_vocab()
    if len(tv) != len(gguf_vocab):
        raise ConfigError(f"GGUF vocabulary has {len(gguf_vocab)} tokens, the tokenizer "
                          f"{len(tv)}")
    for i, tok in enumerate(gguf_vocab):
        if tok.startswith("▁"):  # llama.cpp marks word starts; WordPiece marks continuations
            word = tok[1:]
        elif tok.startswith("[") and tok.endswith("]"):
            word = tok
        else:
            word = "##" + tok
        if tv.get(word, tv.get(tok)) != i:
            raise ConfigError(f"GGUF token {i} ({tok!r}) differs from the tokenizer's vocabulary")
