"""The encoder-initialised teacher (the amortisation flywheel): start the teacher from the encoder's E(x).

A trained encoder already lands near a render's target, so the teacher need not search from the prior:

- ``replace``: E(x) takes the place of steps 1-2's w_n; the projector (step 3) refines it for ``proj_steps``
  steps; the eq. 4 interpolations between the refined code and E(x) and E(x) itself join the SSIM selection
  (step 4), so the result is never worse in SSIM than E(x); by default they blend by α = 1 only
  (``teacher.methods.INIT_ALPHAS``). The schedule starts near the answer (``schedule="warm"``, the default): no
  learning-rate ramp-up and no latent noise, at ``proj_lr``;
  ``"garbin"`` is step 3's own (ramp-up, latent noise; the config's ``proj_lr`` unless ``proj_lr`` is given).
  several renders are refined together (:func:`run_encoder_init_batch`: one projector run, each render with
  its own loss, mask, Adam state and latent-noise stream, so each gets what it gets alone);
- ``candidate``: steps 1-4 as usual (with their own, smaller, counts), E(x) being one more step-1
  candidate for every seed: a seed whose best sample has a higher eq. 1 loss than E(x) continues from E(x).

The encoder reads the render as training and ``r2s-encode`` feed it (``inference.inputs.to_input_tensor``),
and must have been trained for the teacher's generator (same number of W+ layers).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from render2style.teacher.common import StepTimer, seed_generators, stream_key
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.garbin import garbin_proposals
from render2style.teacher.losses import TeacherLoss
from render2style.teacher.methods import INIT_ALPHAS, INIT_MODES, INIT_SCHEDULES
from render2style.teacher.projector import ProjectorSettings, project
from render2style.teacher.run import Problem, build_problem, frozen, prepare_run, select_results
from render2style.teacher.select import interpolation_candidates


@dataclass
class EncoderInit:
    """The encoder (a :class:`render2style.encoders.psp.pSp` in eval mode on the teacher's device), how its
    code starts the teacher (``mode``), and for ``replace`` the projector run from it: ``proj_steps`` steps
    of the ``schedule`` at ``proj_lr`` (None: ``teacher.projector.WARM_LR`` for ``warm``, the config's ``proj_lr`` for
    ``garbin``), and the eq. 4 weights ``interp_alphas`` of the candidates between its result and E(x)."""
    net: Any
    mode: str = "replace"
    proj_steps: int = 20
    proj_lr: float | None = None
    schedule: str = "warm"
    interp_alphas: tuple[float, ...] = INIT_ALPHAS
    name: str = ""

    def __post_init__(self):
        if self.mode not in INIT_MODES:
            raise ValueError(f"init mode must be one of {INIT_MODES}, got {self.mode!r}")
        if self.schedule not in INIT_SCHEDULES:
            raise ValueError(f"init schedule must be one of {INIT_SCHEDULES}, got {self.schedule!r}")
        if self.proj_steps < 0:
            raise ValueError(f"init projector steps must be >= 0, got {self.proj_steps}")
        if self.proj_lr is not None and not self.proj_lr > 0:
            raise ValueError(f"init projector lr must be > 0, got {self.proj_lr}")
        if not self.interp_alphas or not all(0 < a <= 1 for a in self.interp_alphas):
            raise ValueError(f"init interpolation weights must be in (0, 1], got {self.interp_alphas}")

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str | torch.device, **kwargs: Any) -> EncoderInit:
        """From a pSp-layout checkpoint (a path or a registry name), frozen, in eval mode."""
        from render2style.encoders.psp import pSp
        net = pSp.from_checkpoint(checkpoint, device=device).requires_grad_(False)
        return cls(net, name=str(checkpoint), **kwargs)

    def check_generator(self, G) -> None:
        """ValueError naming the checkpoint when its W+ does not fit the teacher's generator."""
        if (self.net.n_styles, self.net.decoder.style_dim) != (G.n_latent, G.style_dim):
            raise ValueError(f"{self.name or 'the encoder'}: its codes are W+ [{self.net.n_styles}, "
                             f"{self.net.decoder.style_dim}] but the teacher's generator takes [{G.n_latent}, "
                             f"{G.style_dim}]; use an encoder trained for this generator")

    def settings(self, cfg: TeacherConfig) -> ProjectorSettings:
        """The projector's schedule from E(x) (``replace``)."""
        return ProjectorSettings.from_code(cfg, self.proj_steps, self.schedule, self.proj_lr)

    def record(self, cfg: TeacherConfig) -> dict[str, Any]:
        """What runs, as JSON values (``run.json``, each target's metrics): the mode and encoder, and for
        ``replace`` the projector's steps, schedule and effective learning rate and the eq. 4 weights."""
        out: dict[str, Any] = {"init_mode": self.mode, "init_encoder": self.name}
        if self.mode == "replace":
            out.update(init_steps=self.proj_steps, init_schedule=self.schedule, init_lr=self.settings(cfg).lr,
                       init_alphas=list(self.interp_alphas))
        return out

    def encode(self, inps: Sequence[TeacherInput]) -> torch.Tensor:
        """E(x) ``[B, L, D]`` (float32) for renders, in one forward pass."""
        from render2style.inference.inputs import to_input_tensor
        xs = []
        for inp in inps:
            rgb = ((inp.image[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            xs.append(to_input_tensor(rgb, inp.face_mask[0, 0].float().cpu().numpy(), self.net.opts.resolution,
                                      self.net.opts.input_nc))
        with torch.no_grad():
            w = self.net.encode(torch.stack(xs).to(self.net.latent_avg.device)).float()
        return w[:, None].expand(-1, self.net.n_styles, -1).contiguous() if w.ndim == 2 else w


def run_encoder_init_teacher(G, init: EncoderInit, inp: TeacherInput, cfg: TeacherConfig, perceptual,
                             seed: int = 0, render_id: str = "", flip: bool = False) -> TeacherResult:
    """:func:`render2style.teacher.run.run_teacher`'s result for one render, the teacher started from E(x).

    ``cfg``'s step counts are the ones this teacher runs (``candidate``: steps 1-3; ``replace``: only the
    projector's ``init.proj_steps``). metrics add ``loss_encoder`` (eq. 1 of E(x), landmark-free, as the
    selection measures it), ``init_mode``, and ``selected_step`` (``encoder`` when E(x) itself won).
    """
    return run_encoder_init_batch(G, init, [inp], cfg, perceptual, seed, [render_id], [flip])[0]


def run_encoder_init_batch(G, init: EncoderInit, inps: Sequence[TeacherInput], cfg: TeacherConfig, perceptual,
                           seed: int = 0, render_ids: Sequence[str] | None = None,
                           flips: Sequence[bool] | None = None) -> list[TeacherResult]:
    """:func:`run_encoder_init_teacher` for several renders at once; each result equals the one its render
    gets alone (up to float rounding). ``replace`` runs one projector over the batch; ``seconds`` are the
    batch's divided by its size (``metrics["batch"]``). ``candidate`` runs steps 1-3 of all renders in one
    batch too (:func:`render2style.teacher.garbin.garbin_proposals`)."""
    init.check_generator(G)
    n = len(inps)
    render_ids = list(render_ids) if render_ids is not None else [""] * n
    flips = list(flips) if flips is not None else [False] * n
    if not n == len(render_ids) == len(flips):
        raise ValueError(f"encoder-initialised teacher: {n} renders, {len(render_ids)} ids, {len(flips)} flips")
    nets, device, cfg = prepare_run(G, cfg, perceptual)
    keys = [stream_key(r, f) for r, f in zip(render_ids, flips)]
    timer = StepTimer(device)
    start = time.perf_counter()
    with frozen(G):
        probs = [build_problem(G, inp, cfg, nets, device) for inp in inps]
        with timer("encoder"):
            w_e = init.encode(inps).to(device)
        if init.mode == "replace":
            proposals = _refine(G, probs, cfg, init, w_e, seed, keys, timer, device)
        else:
            found = garbin_proposals(G, [p.loss for p in probs], cfg, seed, keys, timer, device, step1_extra=w_e)
            proposals = [(torch.cat([w[None], codes]), [{"step": "encoder", "seed": 0}] + rows, stats)
                         for w, (codes, rows, stats) in zip(w_e, found)]
        results = select_results(G, probs, [(codes, None, rows, stats) for codes, rows, stats in proposals], cfg,
                                 timer, render_ids)
        for res, (_, rows, _) in zip(results, proposals):
            res.metrics.update(method="garbin", loss_encoder=rows[0]["loss"])
    seconds = {k: v / n for k, v in timer.seconds.items()}
    seconds["total"] = (time.perf_counter() - start) / n
    for res in results:
        res.metrics.update(**init.record(cfg), perceptual=nets is not None, seed=seed, seconds=seconds, batch=n)
    return results


def _refine(G, probs: Sequence[Problem], cfg: TeacherConfig, init: EncoderInit, w_e: torch.Tensor,
            seed: int, keys: Sequence[tuple[int, int]], timer: StepTimer, device: torch.device) -> list[tuple]:
    """``replace``: per render E(x), its projection over ``init.proj_steps`` steps (all renders in one run, each
    with its own loss and latent-noise stream) and their eq. 4 interpolations (``cfg.interp_layers`` ×
    ``init.interp_alphas``), with rows."""
    if not init.proj_steps:
        return [(w[None], [{"step": "encoder", "seed": 0}], {}) for w in w_e]
    loss = TeacherLoss.stack([p.loss for p in probs])
    gens = [seed_generators(seed, 1, key=key, device=device)[0] for key in keys]
    with timer("projector"):
        w_f = project(G, loss.total, w_e, w_std=cfg.w_std, gens=gens, settings=init.settings(cfg),
                      amp=cfg.amp).w
    interp, names = interpolation_candidates(w_f, w_e, cfg.interp_layers, init.interp_alphas)
    rows = [{"step": "encoder", "seed": 0}, {"step": "projector", "seed": 0}] + [{"step": n, "seed": 0} for n in names]
    return [(torch.cat([w_e[i:i + 1], w_f[i:i + 1], interp[i]]), [dict(r) for r in rows], {})
            for i in range(len(w_e))]
