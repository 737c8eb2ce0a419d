"""Step 2 of Garbin et al.: Convex Set Approximate Nearest Neighbour Search (CS-ANNS).

Per outer iteration, 512 fresh proposals (centroid + N(0, σ²)) are blended with the current w_n by
α ~ U[0.25, 0.75]; w_n itself is candidate 0. The optimised point is a per-layer convex combination
of the 513 candidates (softmax over candidates of a [513 × n_latent] logit matrix) plus control
vectors scaled by β (|β| ≤ 2). Adam on (logits, β), learning rate divided by 10 every 4 inner
iterations; the best point seen becomes the next w_n. Loss: eq. 1 without the landmark term.
"""
from __future__ import annotations

from typing import Sequence

import torch

from render2style.teacher.common import rand, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.losses import TeacherLoss
from render2style.teacher.sampling import draw_samples


def convex_combination(logits: torch.Tensor, candidates: torch.Tensor, beta: torch.Tensor,
                       controls: torch.Tensor) -> torch.Tensor:
    """W+ ``[S, L, D]`` = Σ_p softmax_p(logits)[s, p, l] · candidates[s, p, l] + β[s] @ controls.

    ``logits`` ``[S, P, L]``, ``candidates`` ``[S, P, L, D]``, ``beta`` ``[S, K]``, ``controls`` ``[K, D]``."""
    weights = logits.softmax(dim=1)
    return torch.einsum("spl,spld->sld", weights, candidates) + (beta @ controls)[:, None, :]


def csanns_step(G, loss: TeacherLoss, cfg: TeacherConfig, w_start: torch.Tensor,
                gens: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Refine ``w_start`` ``[S, L, D]`` -> (w_n, its loss ``[S]``, stats). Never worse than the start.

    stats: ``max_abs_beta`` and ``max_weight_sum_error`` (|Σ_p weights − 1|) over all iterations,
    and ``improvements`` (how many times a seed's best point changed)."""
    dev = w_start.device
    S, L, D = w_start.shape
    P = cfg.csanns_proposals
    centroids = cfg.centroids.to(dev)
    controls = cfg.control_vectors.to(dev)
    lo, hi = cfg.csanns_blend
    w_n = w_start.detach().clone()
    with torch.no_grad():
        best = loss(synthesize(G, w_n, cfg.amp))["total"]
    stats = {"max_abs_beta": 0.0, "max_weight_sum_error": 0.0, "improvements": 0}
    for _ in range(cfg.csanns_outer):
        with torch.no_grad():
            w_p = draw_samples(gens, P, centroids, cfg.sample_sigma)[:, :, None]          # [S, P, 1, D]
            a = (lo + (hi - lo) * rand(gens, P, device=dev))[:, :, None, None]             # [S, P, 1, 1]
            candidates = torch.cat([w_n[:, None], a * w_p + (1 - a) * w_n[:, None]], dim=1)  # [S, P+1, L, D]
        logits = torch.zeros(S, P + 1, L, device=dev)
        logits[:, 0] = cfg.csanns_init_logit
        logits.requires_grad_(True)
        beta = torch.zeros(S, len(controls), device=dev, requires_grad=True)
        opt = torch.optim.Adam([logits, beta], lr=cfg.csanns_lr)
        for it in range(cfg.csanns_inner):
            for group in opt.param_groups:
                group["lr"] = cfg.csanns_lr / cfg.csanns_lr_decay ** (it // cfg.csanns_lr_decay_every)
            w = convex_combination(logits, candidates, beta, controls)
            total = loss(synthesize(G, w, cfg.amp))["total"]
            with torch.no_grad():
                better = total < best
                if better.any():
                    stats["improvements"] += int(better.sum())
                    best = torch.where(better, total, best)
                    w_n = torch.where(better[:, None, None], w.detach(), w_n)
                err = (logits.softmax(dim=1).sum(dim=1) - 1).abs().max().item()
                stats["max_weight_sum_error"] = max(stats["max_weight_sum_error"], err)
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            with torch.no_grad():
                beta.clamp_(-cfg.beta_max, cfg.beta_max)
                if beta.numel():
                    stats["max_abs_beta"] = max(stats["max_abs_beta"], beta.abs().max().item())
    return w_n, best, stats
