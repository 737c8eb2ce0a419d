"""Refinement at inference (``r2s-encode --refine_steps K``): K steps of the teacher's masked projector from E(x).

The loss is the teacher's eq. 1 (``teacher.losses.TeacherLoss``: LPIPS + YUV L1 on r(I * Ia)), with Ia the
teacher's mask (``teacher.masks.loss_mask``: falloff around face ∪ hair) and the render resized to the
generator's resolution exactly as ``teacher.run.build_problem`` does; the schedule is the one the flywheel's
teacher uses from E(x) (``teacher.projector.ProjectorSettings.from_code``): ``warm`` by default (no lr ramp-up, no
latent noise, lr 0.05, the cosine ramp-down), or step 3's own (``garbin``: lr 0.01 ramped up, latent noise of
0.01·w_std ramped down); the generator's stored noise either way. One batch is optimized together, but every
image's loss, gradient, Adam state and latent noise (seeded by its name) are its own, so a batch gives each image
what it would get alone up to float rounding (which Adam carries into the codes: up to 2 % of eq. 1 after 12 warm
steps in ``tests/test_refine.py``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from render2style.datasets.training_dataset import to_tensor
from render2style.teacher.common import seed_generators, stream_key, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.losses import PerceptualNets, TeacherLoss
from render2style.teacher.masks import loss_mask, resize
from render2style.teacher.priors import resolve_priors
from render2style.teacher.projector import ProjectorSettings, project
from render2style.teacher.run import frozen

log = logging.getLogger(__name__)


def refine_target(rgb: np.ndarray, face: np.ndarray | None, hair: np.ndarray | None, size: int,
                  include_hair: bool = True, falloff_power: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A render (uint8 RGB [H, W, 3], face and hair masks [H, W] or None) -> (target [3, size, size] in [-1, 1],
    Ia [1, size, size]): the teacher's mask at the render's resolution, both resized to the generator's ``size``.
    No face mask (a photo, a video frame): all face, so Ia is 1 everywhere."""
    face = np.ones(rgb.shape[:2], np.float32) if face is None else face
    ia = torch.from_numpy(loss_mask(face, hair, include_hair, falloff_power))[None, None]
    return resize(to_tensor(rgb)[None], size)[0], resize(ia, size)[0]


@dataclass
class Refined:
    """``codes`` [B, L, D] after refinement; ``before`` / ``after``: each image's eq. 1 loss [B] (const noise)."""
    codes: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor


class Refiner:
    """``refiner(codes, targets, masks, names) -> Refined``: ``steps`` teacher projector steps from ``codes``.

    ``nets``: the teacher's :class:`PerceptualNets` (LPIPS), or None for the pixel (YUV) terms only (the demo
    option ``--no_perceptual``). ``cfg``: the teacher's settings (default: the paper's), its loss resolution
    capped at the generator's. ``schedule`` / ``lr``: as ``ProjectorSettings.from_code``."""

    def __init__(self, G, steps: int, nets: PerceptualNets | None, cfg: TeacherConfig | None = None, *,
                 seed: int = 0, amp: bool = False, schedule: str = "warm", lr: float | None = None):
        cfg = cfg or TeacherConfig()
        changes = {"loss_size": min(cfg.loss_size, G.size)}
        if cfg.w_std is None:    # the projector needs only w_std: no centroids or control vectors computed
            changes.update(centroids=torch.zeros(0, G.style_dim), n_control=0)
        self.G, self.nets, self.seed, self.amp = G, nets, seed, amp
        self.device = next(G.parameters()).device
        cfg = cfg.replace(**changes)
        self.cfg = cfg if cfg.w_std is not None else resolve_priors(G, cfg, self.device, seed)
        self.settings = ProjectorSettings.from_code(self.cfg, steps, schedule, lr)

    def __call__(self, codes: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
                 names: list[str]) -> Refined:
        if not len(codes) == len(targets) == len(masks) == len(names):
            raise ValueError(f"refine: {len(codes)} codes, {len(targets)} targets, {len(masks)} masks, "
                             f"{len(names)} names")
        d = self.device
        loss = TeacherLoss(targets.to(d), masks.to(d), self.cfg, self.nets)
        w0 = codes.to(d).float()
        # one latent-noise stream per image, from its name: the same draws in any batch
        gens = [seed_generators(self.seed, 1, key=stream_key(name), device=d)[0] for name in names]
        with frozen(self.G):
            with torch.no_grad():
                before = loss(synthesize(self.G, w0, self.amp))["total"]
            fit = project(self.G, lambda x: loss(x)["total"], w0, w_std=self.cfg.w_std, gens=gens,
                          settings=self.settings, amp=self.amp)
            with torch.no_grad():
                after = loss(synthesize(self.G, fit.w, self.amp))["total"]
        return Refined(fit.w, before.float(), after.float())
