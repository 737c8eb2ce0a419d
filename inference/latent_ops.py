"""Latent operations on W+ codes (Image2StyleGAN section 6; pSp): morphing and layer crossover."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def interpolate(code_a: torch.Tensor, code_b: torch.Tensor, steps: int,
                per_layer: Sequence[int] | None = None) -> torch.Tensor:
    """Linear morph from ``code_a`` to ``code_b`` ([n_latent, D] each) in ``steps`` frames.

    ``per_layer``: only these 0-based layers move; the others stay ``code_a``'s.
    Returns [steps, n_latent, D]; frame 0 equals ``code_a`` and the last frame ``code_b`` exactly
    (on the moving layers).
    """
    if code_a.shape != code_b.shape:
        raise ValueError(f"codes differ in shape: {tuple(code_a.shape)} vs {tuple(code_b.shape)}")
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0.0, 1.0, steps, dtype=code_a.dtype, device=code_a.device).view(-1, 1, 1)
    frames = torch.lerp(code_a.unsqueeze(0).expand(steps, *code_a.shape),
                        code_b.unsqueeze(0).expand(steps, *code_b.shape), t)
    frames[0], frames[-1] = code_a, code_b          # exact endpoints despite rounding in lerp
    if per_layer is not None:
        keep = torch.ones(code_a.shape[0], dtype=torch.bool, device=code_a.device)
        keep[list(per_layer)] = False
        frames[:, keep] = code_a[keep]
    return frames


def crossover(code_a: torch.Tensor, code_b: torch.Tensor, coarse_layers: int) -> torch.Tensor:
    """Layers [0, coarse_layers) from ``code_a`` (pose, shape), the rest from ``code_b`` (colour, texture).

    Works on [n_latent, D] or batched [B, n_latent, D] codes.
    """
    if code_a.shape != code_b.shape:
        raise ValueError(f"codes differ in shape: {tuple(code_a.shape)} vs {tuple(code_b.shape)}")
    n_latent = code_a.shape[-2]
    if not 0 <= coarse_layers <= n_latent:
        raise ValueError(f"coarse_layers must be in [0, {n_latent}], got {coarse_layers}")
    return torch.cat([code_a[..., :coarse_layers, :], code_b[..., coarse_layers:, :]], dim=-2)
