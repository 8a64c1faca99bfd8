"""The optimizer and learning-rate schedule every trainer uses (its own module, so the
trainer and the model families both import it without importing each other)."""

from __future__ import annotations

from typing import Any

import torch

from rankstack.errors import ConfigError


def adamw_linear_schedule(params, cfg: Any) -> dict[str, Any]:
    """AdamW over the trainable ``params``, linear warmup then linear decay to 0 (per step)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter requires grad")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.max_steps
    warm = int(total * cfg.warmup_ratio)

    def lr_at(step: int) -> float:  # linear warmup, then linear decay to 0
        if step < warm:
            return (step + 1) / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
