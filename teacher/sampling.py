"""Step 1 of Garbin et al.: sample around centroids along control vectors; the best sample wins.

w_i = s(centroids) + N(0, σ²) + Σ_k v_k · U_k · 2.0 with σ² = 0.25 and U_k ~ U[-1, 1] (eq. 2).
All seeds' samples are ranked together in chunks of ``cfg.chunk`` images by eq. 1 without its landmark
term; the dlib term (about 2 ms per image on the CPU, one image at a time) then re-ranks only the
``cfg.landmark_top_k`` best of each seed.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from render2style.teacher.common import rand, randint, randn, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.losses import TeacherLoss


def draw_samples(gens: Sequence[torch.Generator], n: int, centroids: torch.Tensor, sigma: float,
                 controls: torch.Tensor | None = None, control_scale: float = 2.0) -> torch.Tensor:
    """``[len(gens), n, D]`` samples of eq. 2 (eq. 3 when ``controls`` is None) on the generators' device."""
    dev = gens[0].device
    centroids = centroids.to(dev)
    w = centroids[randint(gens, len(centroids), n)] + sigma * randn(gens, n, centroids.shape[1])
    if controls is not None and len(controls):
        u = 2 * rand(gens, n, len(controls)) - 1
        w = w + control_scale * u @ controls.to(dev)
    return w


@torch.no_grad()
def sampling_step(G, loss: TeacherLoss, cfg: TeacherConfig,
                  gens: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of ``cfg.n_samples`` samples per seed under eq. 1 (landmarks included for the top k when
    enabled): (W+ ``[S, n_latent, D]``, its landmark-free loss ``[S]``)."""
    S, n = len(gens), cfg.n_samples
    w = draw_samples(gens, n, cfg.centroids, cfg.sample_sigma, cfg.control_vectors, cfg.control_scale)

    def losses(codes: torch.Tensor, with_landmarks: bool) -> torch.Tensor:
        return torch.cat([loss(synthesize(G, c[:, None].expand(-1, G.n_latent, -1), cfg.amp),
                               with_landmarks=with_landmarks)["total"] for c in codes.split(cfg.chunk)])

    plain = losses(w.flatten(0, 1), False).view(S, n)
    rows = torch.arange(S, device=w.device)
    k = min(cfg.landmark_top_k, n)
    if cfg.landmarks_in_sampling and loss.landmarks is not None and cfg.lambda_landm > 0 and k > 0:
        top = plain.topk(k, dim=1, largest=False).indices                           # [S, k]
        full = losses(w[rows[:, None], top].flatten(0, 1), True).view(S, k)
        idx = top[rows, full.argmin(dim=1)]
    else:
        idx = plain.argmin(dim=1)
    return w[rows, idx][:, None].expand(-1, G.n_latent, -1).contiguous(), plain[rows, idx]
