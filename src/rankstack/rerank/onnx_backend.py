"""ONNX Runtime backend for encoder scorers: export once, cache, run fp32 (or int8).

The model is exported with ``torch.onnx.export`` (TorchScript exporter, dynamic batch and
sequence axes) into a cache directory keyed by the model (name or path, its config, and the
size/mtime of local weight files), the exported output, the input names and the library
versions, so a changed model or setting gets a new file. Writes are atomic.

``quantize="int8"`` applies ONNX Runtime dynamic quantization (int8 weights, activations
quantized on the fly). It is faster but changes scores and rankings: the measured Kendall tau
against fp32 is printed by ``benchmarks/rerank_throughput.py``; do not use it unmeasured.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rankstack.errors import require

log = logging.getLogger("rankstack.rerank")

OPSET = 17


def default_cache_dir() -> Path:
    """``$RANKSTACK_CACHE/onnx``, else ``~/.cache/rankstack/onnx``."""
    root = os.environ.get("RANKSTACK_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "rankstack"
    return base / "onnx"


def cache_key(model_id: str, config: dict[str, Any], output: str, input_names: list[str]) -> str:
    """Stable key of an export: model identity + settings + library versions."""
    import onnx
    import torch
    import transformers

    ident: dict[str, Any] = {"model": model_id, "config": config, "output": output,
                             "inputs": input_names, "opset": OPSET, "torch": torch.__version__,
                             "transformers": transformers.__version__, "onnx": onnx.__version__}
    from rankstack.hf_loading import check_model_path

    p = Path(check_model_path(model_id))
    if p.is_dir():
        ident["model"] = str(p.resolve())
        ident["files"] = sorted(
            (f.name, f.stat().st_size, int(f.stat().st_mtime))
            for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".json"))
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class _Wrapper:
    """Builds a torch module returning one named output (for tracing)."""

    @staticmethod
    def make(model: Any, output: str, input_names: list[str]) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                return getattr(self.model(**dict(zip(input_names, args, strict=True))), output)

        # eval() matters: the exporter restores the wrapper's mode on the whole tree afterwards
        return Wrapped().eval()


def export(model: Any, path: Path, output: str, input_names: list[str]) -> None:
    """Export ``model`` (fp32 copy of its weights) to ``path`` atomically."""
    import torch

    require("onnx", "onnx", "the ONNX backend")
    model = model.float().eval()
    # Example with padding, so the exported graph keeps the attention-mask path.
    ids = torch.full((2, 8), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    args = tuple(example[k] for k in input_names)
    axes = {k: {0: "batch", 1: "seq"} for k in input_names}
    axes[output] = {0: "batch", 1: "seq"} if output == "last_hidden_state" else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # tracer warnings about Python bools in transformers' mask code are expected:
            # the example has padding, so the masked path is the one traced.
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrapper.make(model, output, input_names), args, tmp,
                              input_names=input_names, output_names=[output],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of ``src`` into ``dst`` (atomic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class OnnxModel:
    """An ONNX Runtime session over an exported encoder; :meth:`run` takes numpy inputs."""

    def __init__(self, path: str | os.PathLike[str], *, output: str, input_names: list[str],
                 threads: int = 1) -> None:
        ort = require("onnxruntime", "onnx", "the ONNX backend")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.output = output
        self.input_names = input_names
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    @classmethod
    def for_model(cls, model: Any, model_id: str, *, output: str, with_token_type_ids: bool,
                  threads: int = 1, quantize: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> OnnxModel:
        """Export ``model`` unless a cached export exists, then open a session."""
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_type_ids
                                                   else [])
        key = cache_key(model_id, model.config.to_dict(), output, names)
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        fp32 = root / key / "model.onnx"
        if not fp32.exists():
            log.info("exporting %s to ONNX at %s", model_id, fp32)
            export(model, fp32, output, names)
        path = fp32
        if quantize == "int8":
            path = fp32.with_name("model.int8.onnx")
            if not path.exists():
                log.info("quantizing %s to int8 at %s", model_id, path)
                quantize_int8(fp32, path)
        return cls(path, output=output, input_names=names, threads=threads)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: inputs[k] for k in self.input_names}
        return np.asarray(self.session.run([self.output], feed)[0], dtype=np.float32)
