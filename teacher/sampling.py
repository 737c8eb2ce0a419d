"""Step 1 of Garbin et al.: sample around centroids along control vectors; the best sample wins.

w_i = s(centroids) + N(0, σ²) + Σ_k v_k · U_k · 2.0 with σ² = 0.25 and U_k ~ U[-1, 1] (eq. 2).
All seeds' samples are ranked together in chunks of ``cfg.chunk`` images.
"""
from __future__ import annotations

from typing import Sequence

import torch

from render2style.teacher.common import rand, randn, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.losses import TeacherLoss


def draw_samples(gens: Sequence[torch.Generator], n: int, centroids: torch.Tensor, sigma: float,
                 controls: torch.Tensor | None = None, control_scale: float = 2.0) -> torch.Tensor:
    """``[len(gens), n, D]`` samples of eq. 2 (eq. 3 when ``controls`` is None), on the centroids' device."""
    dev = centroids.device
    idx = torch.stack([torch.randint(len(centroids), (n,), generator=g) for g in gens]).to(dev)
    w = centroids[idx] + sigma * randn(gens, n, centroids.shape[1], device=dev)
    if controls is not None and len(controls):
        u = 2 * rand(gens, n, len(controls), device=dev) - 1
        w = w + control_scale * u @ controls
    return w


@torch.no_grad()
def sampling_step(G, loss: TeacherLoss, cfg: TeacherConfig, gens: Sequence[torch.Generator],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of ``cfg.n_samples`` samples per seed under eq. 1 (landmarks included when enabled):
    (W+ ``[S, n_latent, D]``, loss ``[S]``)."""
    w = draw_samples(gens, cfg.n_samples, cfg.centroids.to(device), cfg.sample_sigma,
                     cfg.control_vectors.to(device), cfg.control_scale)
    flat = w.flatten(0, 1)
    losses = torch.cat([
        loss(synthesize(G, chunk[:, None].expand(-1, G.n_latent, -1), cfg.amp),
             with_landmarks=cfg.landmarks_in_sampling)["total"]
        for chunk in flat.split(cfg.chunk)]).view(len(gens), cfg.n_samples)
    best, idx = losses.min(dim=1)
    w_best = w[torch.arange(len(gens), device=device), idx]
    return w_best[:, None].expand(-1, G.n_latent, -1).contiguous(), best
