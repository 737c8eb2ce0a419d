"""The generator's exponential moving average (G EMA) with StyleGAN2-ADA's half-life in images."""
from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, half_life_kimg: float, cur_nimg: int, rampup: float | None = None) -> float:
    """β = 0.5 ** (batch / half-life in images); with ``rampup`` the half-life is at most ``cur_nimg · rampup``
    (early training averages over fewer images)."""
    ema_nimg = half_life_kimg * 1000
    if rampup:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """θ_ema ← θ + β·(θ_ema − θ) for every parameter; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
