"""Step 3 of Garbin et al. and the projector baseline: the StyleGAN2 projector (Karras et al. 2020),
in W+, with a masked loss and optimised noise maps.

Schedule as in the official projector: learning rate ramped up over the first 5 % and down (cosine)
over the last 25 % of the steps; Gaussian noise of ``noise · w_std`` added to the latent, ramped down
quadratically to 0 at 75 %; noise maps regularised by their autocorrelation at every pyramid level
(weight 1e5) and re-normalised to zero mean, unit variance after each step. Noise maps start from the
generator's stored buffers (so the fit stays close to the deterministic "const" synthesis that
targets use); the paper's step 3 starts at w_n with lr 0.01 and noise 0.01 over 1000 steps.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from render2style.teacher.common import randn, synthesize


def noise_regularization(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample ``[B]`` sum over maps ``[B, 1, r, r]`` and pyramid levels (down to 8²) of the squared
    mean autocorrelation at a one-pixel shift, horizontally and vertically."""
    reg = 0.0
    for n in noises:
        while True:
            reg = reg + (n * torch.roll(n, 1, dims=3)).mean(dim=(1, 2, 3)) ** 2
            reg = reg + (n * torch.roll(n, 1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return reg


def lr_schedule(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official projector's learning-rate multiplier at progress ``t`` in [0, 1)."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


def project(G, loss_fn: Callable[[torch.Tensor], torch.Tensor], w_init: torch.Tensor, w_std: float,
            gens: Sequence[torch.Generator], steps: int = 1000, lr: float = 0.01, noise: float = 0.01,
            noise_ramp: float = 0.75, lr_rampdown: float = 0.25, lr_rampup: float = 0.05,
            noise_reg: float = 1e5, optimize_noise: bool = True,
            amp: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Fit W+ codes ``[S, L, D]`` from ``w_init``; ``loss_fn(images) -> [S]``.

    Returns (w_f, loss of the last step ``[S]``, mean loss per step)."""
    S = w_init.shape[0]
    dev = w_init.device
    w = w_init.detach().clone().requires_grad_(True)
    noises = [n.detach().to(dev).expand(S, -1, -1, -1).clone().requires_grad_(optimize_noise)
              for n in G.stored_noise()]
    opt = torch.optim.Adam([w] + (noises if optimize_noise else []), lr=lr, betas=(0.9, 0.999))
    history, dist = [], torch.full((S,), float("nan"), device=dev)
    for step in range(steps):
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = lr * lr_schedule(t, lr_rampdown, lr_rampup)
        scale = w_std * noise * max(0.0, 1.0 - t / noise_ramp) ** 2
        w_in = w + scale * randn(gens, *w.shape[1:], device=dev) if scale > 0 else w
        dist = loss_fn(synthesize(G, w_in, amp, noise=noises))
        total = dist + noise_reg * noise_regularization(noises) if optimize_noise else dist
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        history.append(dist.detach().mean())
        if optimize_noise:
            with torch.no_grad():
                for n in noises:
                    n -= n.mean(dim=(1, 2, 3), keepdim=True)
                    n *= n.pow(2).mean(dim=(1, 2, 3), keepdim=True).rsqrt()
    return w.detach(), dist.detach(), torch.stack(history).tolist() if history else []
