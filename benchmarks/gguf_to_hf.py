"""Convert the bundled SmolLM2-135M GGUF into a plain Hugging Face directory (de-quantized).

PE-Rank needs an HF causal LM (it feeds embeddings into the input layer); this gives the same
weights the GGUF backend runs, so text listwise and PE-Rank compare the same model.

    python benchmarks/gguf_to_hf.py runs/smollm2-hf
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rankstack.llm.gguf import bundled_smollm2_path

    gguf = Path(bundled_smollm2_path())
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # a GGUF-loaded model carries its quantizer; the weights are already de-quantized
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
