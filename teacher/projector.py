"""Step 3 of Garbin et al. and the projector baseline: the StyleGAN2 projector (Karras et al. 2020)
in W+, with a masked loss.

Schedule as in the official projector: learning rate ramped up over the first 5 % and down (cosine)
over the last 25 % of the steps; Gaussian noise of ``noise · w_std`` added to the latent, ramped down
quadratically to 0 at 75 %. Garbin et al. (§2.1: "We do not use the additional noise inputs at each
layer") start at w_n with lr 0.01 and latent noise 0.01 over 1000 steps and keep the generator's
stored noise, so the fit is exactly the deterministic "const" synthesis that targets are rendered
with. The projector *baseline* also fits the noise maps as the official projector does: regularised
by their autocorrelation at every pyramid level (weight 1e5), re-normalised to zero mean and unit
variance after each step, and returned with the latent (the code only reproduces its image with them).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from render2style.teacher.common import randn, synthesize
from render2style.teacher.config import TeacherConfig

#: The projector's learning rate from a code near the answer (``ProjectorSettings.from_code``, warm schedule;
#: docs/BENCHMARKS.md, "The flywheel": in 20 steps from the round-2 demo encoder, 0.05 reached 0.95× the full
#: teacher's eq. 1 where step 3's schedule (lr 0.01, ramp-up, latent noise) stayed at 1.14×; 0.02 and 0.1 stopped
#: at 1.01× and 1.03×).
WARM_LR = 0.05


@dataclass(frozen=True)
class ProjectorSettings:
    """The projector's schedule; :meth:`garbin` (step 3) and :meth:`baseline` read a TeacherConfig."""
    steps: int = 1000
    lr: float = 0.1
    noise: float = 0.05
    noise_ramp: float = 0.75
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    noise_reg: float = 1e5
    optimize_noise: bool = False

    @classmethod
    def garbin(cls, cfg: TeacherConfig) -> ProjectorSettings:
        return cls(steps=cfg.proj_steps, lr=cfg.proj_lr, noise=cfg.proj_noise, noise_ramp=cfg.proj_noise_ramp,
                   lr_rampdown=cfg.proj_lr_rampdown, lr_rampup=cfg.proj_lr_rampup, optimize_noise=False)

    @classmethod
    def from_code(cls, cfg: TeacherConfig, steps: int, schedule: str = "warm",
                  lr: float | None = None) -> ProjectorSettings:
        """``steps`` steps from a code near the answer (the encoder's E(x)): ``schedule="warm"`` has no lr ramp-up
        and no latent noise, at ``lr`` (None: :data:`WARM_LR`); ``"garbin"`` is step 3's own schedule at ``lr``
        (None: the config's ``proj_lr``)."""
        s = dataclasses.replace(cls.garbin(cfg), steps=steps)
        if schedule == "warm":
            return dataclasses.replace(s, lr_rampup=0.0, noise=0.0, lr=lr or WARM_LR)
        if schedule == "garbin":
            return dataclasses.replace(s, lr=lr or s.lr)
        raise ValueError(f"projector schedule from a code must be 'warm' or 'garbin', got {schedule!r}")

    @classmethod
    def baseline(cls, cfg: TeacherConfig) -> ProjectorSettings:
        return cls(steps=cfg.proj_steps, lr=cfg.baseline_proj_lr, noise=cfg.baseline_proj_noise,
                   noise_ramp=cfg.proj_noise_ramp, lr_rampdown=cfg.proj_lr_rampdown, lr_rampup=cfg.proj_lr_rampup,
                   noise_reg=cfg.proj_noise_reg, optimize_noise=cfg.baseline_optimize_noise)


@dataclass
class Projection:
    """``w`` ``[S, L, D]``; ``noise``: the fitted noise maps (one ``[S, 1, r, r]`` per layer) or None when the
    stored noise was used; ``history``: the mean loss per step (device tensor ``[steps]``)."""
    w: torch.Tensor
    noise: list[torch.Tensor] | None
    history: torch.Tensor


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
    """The official projector's learning-rate multiplier at progress ``t`` in [0, 1); a ramp of 0 is none."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def latent_noise_scale(t: float, w_std: float, noise: float, noise_ramp: float) -> float:
    """Standard deviation of the noise added to the latent at progress ``t``: w_std · noise · (1 − t/ramp)²₊."""
    return w_std * noise * max(0.0, 1.0 - t / noise_ramp) ** 2


def project(G, loss_fn: Callable[[torch.Tensor], torch.Tensor], w_init: torch.Tensor, *, w_std: float,
            gens: Sequence[torch.Generator], settings: ProjectorSettings, amp: bool = True) -> Projection:
    """Fit W+ codes ``[S, L, D]`` from ``w_init`` with ``loss_fn(images) -> [S]``; no host synchronization."""
    s = settings
    S = w_init.shape[0]
    w = w_init.detach().clone().requires_grad_(True)
    noises = None
    if s.optimize_noise:
        noises = [n.detach().to(w.device).expand(S, -1, -1, -1).clone().requires_grad_(True)
                  for n in G.stored_noise()]
    opt = torch.optim.Adam([w] + (noises or []), lr=s.lr, betas=(0.9, 0.999))
    history = []
    for step in range(s.steps):
        t = step / s.steps
        for group in opt.param_groups:
            group["lr"] = s.lr * lr_schedule(t, s.lr_rampdown, s.lr_rampup)
        scale = latent_noise_scale(t, w_std, s.noise, s.noise_ramp)
        w_in = w + scale * randn(gens, *w.shape[1:]) if scale > 0 else w
        dist = loss_fn(synthesize(G, w_in, amp, noise=noises))
        total = dist + s.noise_reg * noise_regularization(noises) if noises else dist
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        history.append(dist.detach().mean())
        if noises:
            with torch.no_grad():
                for n in noises:
                    n -= n.mean(dim=(1, 2, 3), keepdim=True)
                    n *= n.pow(2).mean(dim=(1, 2, 3), keepdim=True).rsqrt()
    fitted = [n.detach() for n in noises] if noises else None
    return Projection(w.detach(), fitted, torch.stack(history) if history else torch.zeros(0))
