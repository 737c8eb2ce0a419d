"""Closed-loop teacher problems: renders made by the generator itself, so the answer ``w_true`` is known.

A render-like domain shift is applied to ``G(w_true)``: posterisation (the flat shading of a simple
renderer), a per-channel colour shift and a Gaussian blur; the face mask is an ellipse around the image
centre. A teacher step that works lowers eq. 1 on these and moves towards ``w_true``; one that is broken
does not, which is what the quality benchmark and the tests measure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from render2style.teacher.common import seeded_generator
from render2style.teacher.config import TeacherInput
from render2style.teacher.masks import blur


@dataclass(frozen=True)
class DomainShift:
    """How a closed-loop render differs from ``G(w_true)``; the defaults look like a flat-shaded render."""
    levels: int = 6                 # posterisation: grey levels per channel (0: none)
    colour_gain: tuple[float, float, float] = (1.08, 0.97, 0.92)
    colour_offset: tuple[float, float, float] = (0.04, 0.0, -0.03)
    blur_sigma: float = 0.6         # pixels of the generator's resolution (0: none)

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> shifted images in [-1, 1]."""
        x = image.float()
        if self.blur_sigma > 0:
            size = 2 * int(np.ceil(3 * self.blur_sigma)) + 1
            x = blur(x, size, self.blur_sigma)
        gain = torch.tensor(self.colour_gain, device=x.device).view(1, 3, 1, 1)
        offset = torch.tensor(self.colour_offset, device=x.device).view(1, 3, 1, 1)
        x = (x * gain + offset).clamp(-1, 1)
        if self.levels > 1:
            q = (self.levels - 1) / 2
            x = torch.round((x + 1) * q) / q - 1
        return x


def ellipse_mask(size: int, rx: float = 0.3, ry: float = 0.38, cy: float = 0.52) -> torch.Tensor:
    """``[1, 1, size, size]`` binary ellipse centred at (0.5, ``cy``) with radii (``rx``, ``ry``) × size."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((xx / size - 0.5) / rx) ** 2 + ((yy / size - cy) / ry) ** 2 <= 1
    return inside.float()[None, None]


@dataclass
class ClosedLoopCase:
    """One closed-loop problem: the teacher's input and the W+ code ``[n_latent, D]`` that made it."""
    id: str
    input: TeacherInput
    w_true: torch.Tensor


@torch.no_grad()
def closed_loop_cases(G, n: int, seed: int = 0, shift: DomainShift = DomainShift(),
                      truncation: float = 0.7) -> list[ClosedLoopCase]:
    """``n`` cases with ``w_true`` = w̄ + ψ (mapping(z) − w̄) for seeded z (ψ = ``truncation``, the usual
    range of well-formed samples), rendered with ``G``'s stored noise and shifted by ``shift``."""
    device = next(G.parameters()).device
    z = torch.randn(n, G.style_dim, generator=seeded_generator(seed, "closed_loop")).to(device)
    w_avg = G.mean_latent(4096, seed=seed + 1).reshape(1, -1)
    w = w_avg + truncation * (G.style(z) - w_avg)
    w_plus = w[:, None].expand(-1, G.n_latent, -1).contiguous()
    images = shift.apply(G.synthesis(w_plus, noise_mode="const").clamp(-1, 1))
    mask = ellipse_mask(G.size).to(device)
    return [ClosedLoopCase(f"closed{seed}_{i:03d}", TeacherInput(images[i:i + 1].cpu(), mask.cpu()),
                           w_plus[i].float().cpu()) for i in range(n)]
