"""Step 2 of Garbin et al.: Convex Set Approximate Nearest Neighbour Search (CS-ANNS).

Per outer iteration, 512 fresh proposals (centroid + N(0, σ²), eq. 3) are blended with the current w_n
by α ~ U[0.25, 0.75]; w_n itself is candidate 0. The optimised point is a per-layer convex combination
of the 513 candidates (a softmax over candidates of a [513 × n_latent] logit matrix, so every row of
weights sums to 1) plus the control vectors scaled by β, clamped to |β| ≤ 2 after every step (projected
Adam). Adam at the paper's lr 0.01, divided by 10 every 4 inner iterations; the best point seen becomes
the next w_n. Loss: eq. 1 without the landmark term.

Step sizes. The paper gives the learning rate but not the scale of the parameters it applies to. Adam
moves every parameter by about lr per iteration whatever its gradient, so over the 7 steps between 8
inner evaluations (4 at lr, 3 at lr/10) a parameter moves at most 4.3·lr = 0.043. Applied to raw logits that start at
(L₀, 0, ..., 0) with L₀ ≈ 10 (w_n's weight 0.98 against 512 proposals) and to raw β, nothing moves:
no proposal's weight exceeds 1e-4 and |β| stays below 0.05 (the step then only drifts towards the
proposals' mean). Here the optimised parameters are θ with

    logits = csanns_logit_scale · θ,   β = clamp(csanns_beta_scale · θ_β, ±2),

so that Adam's lr 0.01 on θ moves a logit by 2.5 per iteration: one iteration can give the helpful
proposals weights comparable to w_n's, and the ÷10 decay after 4 iterations refines around them; β
moves by 0.5 per iteration and can reach the clamp within the first 4. For Adam a scale is the same as
a larger learning rate (up to its ε): the real step sizes are 2.5 (logits) and 0.5 (β), and the first
step moves every logit by ±2.5 by the sign of its gradient; the scales keep the paper's schedule (lr
0.01, ÷10) readable as printed. The start is still "alpha one only for the current wn" up to the
softmax (w_n's weight ``csanns_init_weight``) and β = 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

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


def draw_proposals(gens: Sequence[torch.Generator], w_n: torch.Tensor, cfg: TeacherConfig) -> torch.Tensor:
    """Candidates ``[S, P + 1, L, D]``: w_n, then ``cfg.csanns_proposals`` samples of eq. 3 blended with it,
    α·w_p + (1 − α)·w_n with α ~ U(``cfg.csanns_blend``) per proposal."""
    lo, hi = cfg.csanns_blend
    w_p = draw_samples(gens, cfg.csanns_proposals, cfg.centroids, cfg.sample_sigma)[:, :, None]   # [S, P, 1, D]
    a = (lo + (hi - lo) * rand(gens, cfg.csanns_proposals))[:, :, None, None]                      # [S, P, 1, 1]
    return torch.cat([w_n[:, None], a * w_p + (1 - a) * w_n[:, None]], dim=1)


def inner_lr(cfg: TeacherConfig, it: int) -> float:
    """The paper's inner-loop learning rate: lr ÷ 10 every 4 iterations."""
    return cfg.csanns_lr / cfg.csanns_lr_decay ** (it // cfg.csanns_lr_decay_every)


def csanns_step(G, loss: TeacherLoss, cfg: TeacherConfig, w_start: torch.Tensor,
                gens: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Refine ``w_start`` ``[S, L, D]`` -> (w_n, its loss ``[S]``, stats), with no host synchronization.

    stats (device tensors): ``max_proposal_weight`` (largest softmax weight of any proposal) and
    ``max_abs_beta`` per seed ``[S]``, ``improvements`` per seed (inner iterations that improved its best)."""
    S, L, _ = w_start.shape
    P, dev = cfg.csanns_proposals, w_start.device
    controls = cfg.control_vectors.to(dev)
    w_n = w_start.detach().clone()
    with torch.no_grad():
        best = loss(synthesize(G, w_n, cfg.amp))["total"]
    init = math.log(cfg.csanns_init_weight * P / (1 - cfg.csanns_init_weight)) / cfg.csanns_logit_scale
    stats = {"max_proposal_weight": torch.zeros(S, device=dev), "max_abs_beta": torch.zeros(S, device=dev),
             "improvements": torch.zeros(S, dtype=torch.long, device=dev)}
    for _ in range(cfg.csanns_outer):
        with torch.no_grad():
            candidates = draw_proposals(gens, w_n, cfg)
        theta = torch.zeros(S, P + 1, L, device=dev)
        theta[:, 0] = init
        theta.requires_grad_(True)
        theta_beta = torch.zeros(S, len(controls), device=dev, requires_grad=True)
        opt = torch.optim.Adam([theta, theta_beta], lr=cfg.csanns_lr)
        for it in range(cfg.csanns_inner):
            for group in opt.param_groups:
                group["lr"] = inner_lr(cfg, it)
            last = it == cfg.csanns_inner - 1
            with torch.set_grad_enabled(not last):      # the last point is evaluated, never stepped from
                logits = cfg.csanns_logit_scale * theta
                beta = cfg.csanns_beta_scale * theta_beta
                w = convex_combination(logits, candidates, beta, controls)
                total = loss(synthesize(G, w, cfg.amp))["total"]
            with torch.no_grad():
                better = total < best
                best = torch.where(better, total, best)
                w_n = torch.where(better[:, None, None], w, w_n)
                stats["improvements"] += better
                weights = logits.softmax(dim=1)[:, 1:]
                stats["max_proposal_weight"] = torch.maximum(stats["max_proposal_weight"], weights.amax(dim=(1, 2)))
                stats["max_abs_beta"] = torch.maximum(stats["max_abs_beta"],
                                                      beta.abs().amax(dim=1) if beta.numel() else 0 * best)
            if last:
                break
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            with torch.no_grad():      # projected: |β| <= 2 after every step, its gradient never cut off
                theta_beta.clamp_(-cfg.beta_max / cfg.csanns_beta_scale, cfg.beta_max / cfg.csanns_beta_scale)
    return w_n.detach(), best, stats
