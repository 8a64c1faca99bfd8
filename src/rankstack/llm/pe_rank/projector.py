"""The PE-Rank projector: an MLP from the encoder's embedding space into the LLM's.

``Linear(d_emb -> d_llm) -> GELU -> Linear(d_llm -> d_llm)``. Its output is used twice: as the
input embedding of a passage token, and as that passage's output (LM-head) row when decoding.
"""

from __future__ import annotations

from rankstack.errors import require

torch = require("torch", "neural", "PE-Rank")
nn = torch.nn


class Projector(nn.Module):
    """MLP mapping passage embeddings ``(..., d_emb)`` to LLM embeddings ``(..., d_llm)``."""

    def __init__(self, d_emb: int, d_llm: int) -> None:
        super().__init__()
        self.d_emb = int(d_emb)
        self.d_llm = int(d_llm)
        self.net = nn.Sequential(nn.Linear(self.d_emb, self.d_llm), nn.GELU(),
                                 nn.Linear(self.d_llm, self.d_llm))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb)
