"""``run_teacher``: one render -> its W+ target, by Garbin et al.'s pipeline or a baseline."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch

from render2style.teacher.common import StepTimer, seed_generators, synthesize
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.garbin import garbin_proposals
from render2style.teacher.image2stylegan import Image2StyleGANLoss, image2stylegan
from render2style.teacher.landmarks import LandmarkDetector, face_box
from render2style.teacher.losses import PerceptualNets, TeacherLoss, resolve_perceptual
from render2style.teacher.masks import loss_mask, resize
from render2style.teacher.priors import resolve_priors
from render2style.teacher.projector import project
from render2style.teacher.select import score_candidates, select_best

log = logging.getLogger(__name__)

METHODS = ("garbin", "image2stylegan", "projector")


@dataclass
class Problem:
    """One render prepared for a generator of resolution S."""
    render: torch.Tensor        # [1, 3, H, W] the render at its own resolution (selection)
    render_mask: torch.Tensor   # [1, 1, H, W] loss mask Ia at the render's resolution
    target: torch.Tensor        # [1, 3, S, S]
    mask: torch.Tensor          # [1, 1, S, S]
    loss: TeacherLoss


def build_problem(G, inp: TeacherInput, cfg: TeacherConfig, nets: Optional[PerceptualNets],
                  device: torch.device) -> Problem:
    """Loss mask Ia (falloff around face ∪ hair), the render resized to the generator's resolution,
    the dlib landmark term (box from the render's landmarks, else its mask) and eq. 1 against it."""
    hair = inp.hair_mask[0, 0].cpu().numpy() if inp.hair_mask is not None else None
    ia = loss_mask(inp.face_mask[0, 0].cpu().numpy(), hair, cfg.include_hair, cfg.falloff_power)
    render = inp.image.float().to(device)
    render_mask = torch.from_numpy(ia)[None, None].to(device)
    target, mask = resize(render, G.size), resize(render_mask, G.size)
    detector = None
    if cfg.lambda_landm > 0:
        h, w = inp.image.shape[-2:]
        if inp.landmarks is not None:
            pts = inp.landmarks.cpu().numpy() * np.array([cfg.loss_size / w, cfg.loss_size / h])
            box = face_box(cfg.loss_size, landmarks=pts)
        else:
            small = resize(inp.face_mask.float(), cfg.loss_size)[0, 0].cpu().numpy()
            box = face_box(cfg.loss_size, mask=small)
        detector = LandmarkDetector(box)
    return Problem(render, render_mask, target, mask, TeacherLoss(target, mask, cfg, nets, detector))


@contextmanager
def frozen(G) -> Iterator[None]:
    """The generator's weights need no gradients while latents are optimised."""
    flags = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(G.parameters(), flags):
            p.requires_grad_(f)


def run_teacher(method: str, G, inp: TeacherInput, cfg: TeacherConfig, perceptual, seed: int = 0) -> TeacherResult:
    """Find the W+ target of one render.

    method: "garbin" (steps 1-4 over ``cfg.n_seeds`` seeds, selection by SSIM), "image2stylegan"
    (from w̄) or "projector" (the masked StyleGAN2 projector alone, from w̄).
    perceptual: :class:`PerceptualNets` (pretrained LPIPS / VGG-16), or ``False``, the explicit demo
    option that drops the perceptual terms (recorded as ``metrics["perceptual"] = False``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown teacher method {method!r}; expected one of {METHODS}")
    nets = resolve_perceptual(perceptual)
    if nets is None:
        log.warning("teacher: perceptual=False (demo option): LPIPS/VGG terms dropped; pixel, YUV and SSIM only")
    device = next(G.parameters()).device
    if None in (cfg.centroids, cfg.control_vectors, cfg.w_avg, cfg.w_std):
        cfg = resolve_priors(G, cfg, device)
    timer = StepTimer(device)
    start = time.perf_counter()
    with frozen(G):
        prob = build_problem(G, inp, cfg, nets, device)
        if method == "garbin":
            codes, rows, stats = garbin_proposals(G, prob.loss, cfg, seed, timer, device)
        else:
            codes, rows, stats = _baseline(method, G, prob, cfg, nets, seed, timer, device)
        with timer("selection"):
            ssims, losses = score_candidates(G, codes, prob.render, prob.render_mask, prob.loss, cfg.select_size,
                                             cfg.chunk, cfg.amp)
        best = select_best(ssims)
        w_plus = codes[best]
        with torch.no_grad():
            image = synthesize(G, w_plus[None], cfg.amp)
            terms = prob.loss(image, with_landmarks=True)
    for row, s, l in zip(rows, ssims.tolist(), losses.tolist()):
        row.update(ssim=s, loss=l)
    candidates = [dict(row, w_plus=w.cpu()) for row, w in zip(rows, codes)] if method == "garbin" else []
    metrics = {f"loss_{k}": float(v[0]) for k, v in terms.items()}
    metrics.update(method=method, perceptual=nets is not None, ssim=float(ssims[best]), seed=seed,
                   selected_step=rows[best]["step"], selected_seed=rows[best]["seed"],
                   seconds={**timer.seconds, "total": time.perf_counter() - start}, **stats)
    return TeacherResult(w_plus=w_plus.float().cpu(), image=image[0].clamp(-1, 1).cpu(), metrics=metrics,
                         candidates=candidates)


def _baseline(method: str, G, prob: Problem, cfg: TeacherConfig, nets: Optional[PerceptualNets], seed: int,
              timer: StepTimer, device: torch.device) -> tuple[torch.Tensor, list[dict], dict]:
    """One result of a baseline, started from w̄: (W+ ``[1, L, D]``, its row, per-step loss curve)."""
    w_avg = cfg.w_avg.to(device).reshape(1, 1, -1).expand(1, G.n_latent, -1)
    if method == "image2stylegan":
        vgg = nets.vgg if nets is not None else None
        if nets is not None and vgg is None:
            raise ValueError("image2stylegan needs VGG-16 features: PerceptualNets.load(..., need_vgg=True)")
        loss = Image2StyleGANLoss(prob.target, prob.mask, vgg, cfg.i2s_size, cfg.i2s_lambda_mse)
        with timer(method):
            w, history = image2stylegan(G, loss, w_avg[0, 0], cfg.i2s_steps, cfg.i2s_lr, cfg.amp)
    else:
        gens = seed_generators(seed, 1)
        with timer(method):
            w, _, history = project(G, lambda x: prob.loss(x)["total"], w_avg, cfg.w_std, gens, cfg.proj_steps,
                                    cfg.baseline_proj_lr, cfg.baseline_proj_noise, cfg.proj_noise_ramp, cfg.proj_lr_rampdown,
                                    cfg.proj_lr_rampup, cfg.proj_noise_reg, cfg.proj_optimize_noise, cfg.amp)
    return w, [{"step": method, "seed": 0}], {f"loss_{method}_first": history[0], f"loss_{method}_last": history[-1]}
