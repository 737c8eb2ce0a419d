"""``run_teacher``: one render -> its W+ target, by Garbin et al.'s pipeline or a baseline; ``run_teacher_batch``
for several renders at once."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from render2style.teacher.common import StepTimer, seed_generators, stream_key
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.garbin import garbin_proposals
from render2style.teacher.image2stylegan import Image2StyleGANLoss, image2stylegan
from render2style.teacher.landmarks import LandmarkDetector, face_box
from render2style.teacher.losses import PerceptualNets, TeacherLoss, resolve_perceptual
from render2style.teacher.masks import loss_mask, resize
from render2style.teacher.methods import METHODS
from render2style.teacher.priors import resolve_priors
from render2style.teacher.projector import ProjectorSettings, project
from render2style.teacher.select import score_renders

log = logging.getLogger(__name__)



@dataclass
class Problem:
    """One render prepared for a generator of resolution S."""
    render: torch.Tensor        # [1, 3, H, W] the render at its own resolution (selection)
    render_mask: torch.Tensor   # [1, 1, H, W] loss mask Ia at the render's resolution
    target: torch.Tensor        # [1, 3, S, S]
    mask: torch.Tensor          # [1, 1, S, S]
    loss: TeacherLoss


def build_problem(G, inp: TeacherInput, cfg: TeacherConfig, nets: PerceptualNets | None,
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


def run_teacher(method: str, G, inp: TeacherInput, cfg: TeacherConfig, perceptual, seed: int = 0,
                render_id: str = "", flip: bool = False) -> TeacherResult:
    """Find the W+ target of one render.

    method: "garbin" (steps 1-4 over ``cfg.n_seeds`` seeds, selection by SSIM), "image2stylegan"
    (from w̄) or "projector" (the masked StyleGAN2 projector alone, from w̄, noise maps fitted too).
    perceptual: :class:`PerceptualNets` (pretrained LPIPS / VGG-16), or ``False``, the explicit demo
    option that drops the perceptual terms (recorded as ``metrics["perceptual"] = False``).
    Every random stream depends on (``seed``, ``render_id``, ``flip``, seed index).
    metrics: the selected code's eq. 1 terms, its SSIM, seconds per step and, for "garbin", per seed the
    landmark-free eq. 1 loss after each step (``loss_sampling``, ``loss_csanns``, ``loss_projector``,
    measured like the selection: const noise) and CS-ANNS's largest proposal weight and |β|.
    """
    return run_teacher_batch(method, G, [inp], cfg, perceptual, seed, [render_id], [flip])[0]


def run_teacher_batch(method: str, G, inps: Sequence[TeacherInput], cfg: TeacherConfig, perceptual, seed: int = 0,
                      render_ids: Sequence[str] | None = None, flips: Sequence[bool] | None = None
                      ) -> list[TeacherResult]:
    """:func:`run_teacher` for several renders. For "garbin" their CS-ANNS and projector steps run as one batch
    (more work per operation: with a 64² generator on 2 CPU threads, 4 renders a run took those two steps from
    1.41 to 0.67 s per render), each render getting what it gets alone up to float rounding; the baselines run
    one after another.
    ``seconds`` are the batch's divided by its size (``metrics["batch"]``)."""
    if method not in METHODS:
        raise ValueError(f"unknown teacher method {method!r}; expected one of {METHODS}")
    n = len(inps)
    render_ids = list(render_ids) if render_ids is not None else [""] * n
    flips = list(flips) if flips is not None else [False] * n
    if not n == len(render_ids) == len(flips):
        raise ValueError(f"teacher: {n} renders, {len(render_ids)} ids, {len(flips)} flips")
    nets, device, cfg = prepare_run(G, cfg, perceptual)
    keys = [stream_key(r, f) for r, f in zip(render_ids, flips)]
    timer = StepTimer(device)
    start = time.perf_counter()
    with frozen(G):
        probs = [build_problem(G, inp, cfg, nets, device) for inp in inps]
        if method == "garbin":
            found = [(codes, None, rows, stats) for codes, rows, stats in
                     garbin_proposals(G, [p.loss for p in probs], cfg, seed, keys, timer, device)]
        else:
            found = [_baseline(method, G, prob, cfg, nets, seed, key, timer, device) for prob, key in zip(probs, keys)]
        results = select_results(G, probs, found, cfg, timer, render_ids, garbin=method == "garbin")
    seconds = {k: v / n for k, v in timer.seconds.items()}
    seconds["total"] = (time.perf_counter() - start) / n
    for res in results:
        res.metrics.update(method=method, perceptual=nets is not None, seed=seed, seconds=seconds, batch=n)
    return results


def select_results(G, probs: Sequence[Problem], found: Sequence[tuple], cfg: TeacherConfig, timer: StepTimer,
                   render_ids: Sequence[str], garbin: bool = True) -> list[TeacherResult]:
    """Step 4 for several renders, their candidates scored in one pass (:func:`score_renders`): per render, of
    ``found[r]`` = (candidate codes ``[M, L, D]``, their noise maps or None, one row per candidate, statistics),
    the code with the highest SSIM, its image and eq. 1 terms; each row gets its candidate's ``ssim`` and
    landmark-free ``loss``. ``garbin``: the result keeps every candidate and the per-step losses
    (``loss_sampling``, ...). A render whose candidates all score NaN keeps its first one, logged with its id."""
    noises = [noise for _, noise, _, _ in found]
    with timer("selection"):
        scored = score_renders(G, [codes for codes, *_ in found], [p.render for p in probs],
                               [p.render_mask for p in probs], [p.loss for p in probs], cfg.select_size,
                               cfg.chunk, cfg.amp, noises=noises if noises[0] is not None else None)
        with torch.no_grad():
            terms = [p.loss(s.image, with_landmarks=True) for p, s in zip(probs, scored)]
    results = []
    for rid, (codes, noise, rows, stats), s, t in zip(render_ids, found, scored, terms):
        if not torch.isfinite(s.ssim).any():
            log.warning("selection: render %r: no candidate has a finite SSIM (%d candidates); the first (%s) is kept",
                        rid, len(rows), rows[0]["step"])
        for row, value, loss in zip(rows, s.ssim.tolist(), s.loss.tolist()):
            row.update(ssim=value, loss=loss)
        metrics = {f"loss_{k}": float(v[0]) for k, v in t.items()}
        metrics.update(ssim=rows[s.best]["ssim"], selected_step=rows[s.best]["step"],
                       selected_seed=rows[s.best]["seed"], **_host(stats))
        candidates = []
        if garbin:
            for step in ("sampling", "csanns", "projector"):
                metrics[f"loss_{step}"] = [r["loss"] for r in rows if r["step"] == step]
            candidates = [dict(row, w_plus=w.cpu()) for row, w in zip(rows, codes)]
        results.append(TeacherResult(w_plus=codes[s.best].float().cpu(), image=s.image[0].clamp(-1, 1).cpu(),
                                     metrics=metrics, candidates=candidates,
                                     noise=[x[0].cpu() for x in noise] if noise else None))
    return results


def prepare_run(G, cfg: TeacherConfig, perceptual) -> tuple[PerceptualNets | None, torch.device, TeacherConfig]:
    """The perceptual networks (None, warned once, when off), G's device, and ``cfg`` with its priors
    resolved and moved to that device once, not per step (each copy would synchronize)."""
    nets = resolve_perceptual(perceptual)
    if nets is None:
        _warn_no_perceptual()
    device = next(G.parameters()).device
    if any(v is None for v in (cfg.centroids, cfg.control_vectors, cfg.w_avg, cfg.w_std)):
        cfg = resolve_priors(G, cfg, device)
    cfg = cfg.replace(centroids=cfg.centroids.to(device), control_vectors=cfg.control_vectors.to(device),
                      w_avg=cfg.w_avg.to(device))
    return nets, device, cfg


@functools.lru_cache(maxsize=1)
def _warn_no_perceptual() -> None:
    """Once per process, not per image (it would break a job's progress bar)."""
    log.warning("teacher: perceptual=False (demo option): LPIPS/VGG terms dropped; pixel, YUV and SSIM only")


def _host(stats: dict) -> dict:
    """Device statistics -> JSON values, in one pass at the end of the run: maxima and sums over batches."""
    out = {}
    for name, values in stats.items():
        if isinstance(values, list):
            t = torch.stack([torch.as_tensor(v).float().reshape(-1).amax() if "max" in name
                             else torch.as_tensor(v).float().sum() for v in values])
            out[name] = float(t.amax() if "max" in name else t.sum())
        else:
            out[name] = values
    return out


def _baseline(method: str, G, prob: Problem, cfg: TeacherConfig, nets: PerceptualNets | None, seed: int,
              key: tuple[int, int], timer: StepTimer, device: torch.device):
    """One result of a baseline, started from w̄: (W+ ``[1, L, D]``, its noise maps or None, its row,
    first and last loss of its optimisation)."""
    w_avg = cfg.w_avg.to(device).reshape(1, 1, -1).expand(1, G.n_latent, -1)
    noise = None
    if method == "image2stylegan":
        vgg = nets.vgg if nets is not None else None
        if nets is not None and vgg is None:
            raise ValueError("image2stylegan needs VGG-16 features: PerceptualNets.load(..., need_vgg=True)")
        loss = Image2StyleGANLoss(prob.target, prob.mask, vgg, cfg.i2s_size, cfg.i2s_lambda_mse)
        with timer(method):
            w, history = image2stylegan(G, loss, w_avg[0, 0], cfg.i2s_steps, cfg.i2s_lr, cfg.amp)
    else:
        gens = seed_generators(seed, 1, key=key, device=device)
        with timer(method):
            fit = project(G, lambda x: prob.loss(x)["total"], w_avg, w_std=cfg.w_std, gens=gens,
                          settings=ProjectorSettings.baseline(cfg), amp=cfg.amp)
        w, noise, history = fit.w, fit.noise, fit.history
    first_last = torch.stack([history[0], history[-1]]).tolist() if len(history) else [float("nan")] * 2
    return w, noise, [{"step": method, "seed": 0}], {f"loss_{method}_first": first_last[0],
                                                     f"loss_{method}_last": first_last[1]}
