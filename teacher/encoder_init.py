"""The encoder-initialised teacher (the amortisation flywheel): start the teacher from the encoder's E(x).

A trained encoder already lands near a render's target, so the teacher need not search from the prior:

- ``replace``: E(x) takes the place of steps 1-2's w_n; the projector (step 3, Garbin et al.'s settings
  with its own step count) refines it; the eq. 4 interpolations between the refined code and E(x) and
  E(x) itself join the SSIM selection (step 4), so the result is never worse in SSIM than E(x);
- ``candidate``: steps 1-4 as usual (with their own, smaller, counts), E(x) being one more step-1
  candidate for every seed: a seed whose best sample has a higher eq. 1 loss than E(x) continues from E(x).

The encoder reads the render as training and ``r2s-encode`` feed it (``inference.inputs.to_input_tensor``),
and must have been trained for the teacher's generator (same number of W+ layers).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from render2style.teacher.common import StepTimer, seed_generators, stream_key, synthesize
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.garbin import garbin_proposals
from render2style.teacher.methods import INIT_MODES
from render2style.teacher.projector import ProjectorSettings, project
from render2style.teacher.run import _host, build_problem, frozen, prepare_run
from render2style.teacher.select import interpolation_candidates, score_candidates, select_best


@dataclass
class EncoderInit:
    """The encoder (a :class:`render2style.encoders.psp.pSp` in eval mode on the teacher's device), how its
    code starts the teacher (``mode``) and the projector steps run from it (``replace``)."""
    net: Any
    mode: str = "replace"
    proj_steps: int = 100
    name: str = ""

    def __post_init__(self):
        if self.mode not in INIT_MODES:
            raise ValueError(f"init mode must be one of {INIT_MODES}, got {self.mode!r}")
        if self.proj_steps < 0:
            raise ValueError(f"init projector steps must be >= 0, got {self.proj_steps}")

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

    def encode(self, inp: TeacherInput) -> torch.Tensor:
        """E(x) ``[1, L, D]`` (float32) for one render."""
        from render2style.inference.inputs import to_input_tensor
        rgb = ((inp.image[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        x = to_input_tensor(rgb, inp.face_mask[0, 0].float().cpu().numpy(), self.net.opts.resolution,
                            self.net.opts.input_nc)[None].to(self.net.latent_avg.device)
        with torch.no_grad():
            w = self.net.encode(x).float()
        return w[:, None].expand(-1, self.net.n_styles, -1).contiguous() if w.ndim == 2 else w


def run_encoder_init_teacher(G, init: EncoderInit, inp: TeacherInput, cfg: TeacherConfig, perceptual,
                             seed: int = 0, render_id: str = "", flip: bool = False) -> TeacherResult:
    """:func:`render2style.teacher.run.run_teacher`'s result for one render, the teacher started from E(x).

    ``cfg``'s step counts are the ones this teacher runs (``candidate``: steps 1-3; ``replace``: only the
    projector's ``init.proj_steps``). metrics add ``loss_encoder`` (eq. 1 of E(x), landmark-free, as the
    selection measures it), ``init_mode``, and ``selected_step`` (``encoder`` when E(x) itself won).
    """
    init.check_generator(G)
    nets, device, cfg = prepare_run(G, cfg, perceptual)
    key = stream_key(render_id, flip)
    timer = StepTimer(device)
    start = time.perf_counter()
    stats: dict = {}
    with frozen(G):
        prob = build_problem(G, inp, cfg, nets, device)
        with timer("encoder"):
            w_e = init.encode(inp).to(device)
        if init.mode == "replace":
            codes, rows = _refine(G, prob, cfg, init.proj_steps, w_e, seed, key, timer, device)
        else:
            codes, rows, stats = garbin_proposals(G, prob.loss, cfg, seed, key, timer, device, step1_extra=w_e)
            codes, rows = torch.cat([w_e, codes]), [{"step": "encoder", "seed": 0}] + rows
        with timer("selection"):
            ssims, losses = score_candidates(G, codes, prob.render, prob.render_mask, prob.loss, cfg.select_size,
                                             cfg.chunk, cfg.amp)
        best = select_best(ssims)
        with torch.no_grad():
            image = synthesize(G, codes[best][None], cfg.amp)
            terms = prob.loss(image, with_landmarks=True)
    ssims, losses = ssims.tolist(), losses.tolist()
    for row, s, value in zip(rows, ssims, losses):
        row.update(ssim=s, loss=value)
    metrics = {f"loss_{k}": float(v[0]) for k, v in terms.items()}
    metrics.update(method="garbin", init_mode=init.mode, init_encoder=init.name, perceptual=nets is not None,
                   ssim=ssims[best], seed=seed, selected_step=rows[best]["step"], selected_seed=rows[best]["seed"],
                   loss_encoder=losses[0], seconds={**timer.seconds, "total": time.perf_counter() - start},
                   **_host(stats))
    for step in ("sampling", "csanns", "projector"):
        metrics[f"loss_{step}"] = [r["loss"] for r in rows if r["step"] == step]
    candidates = [dict(row, w_plus=w.cpu()) for row, w in zip(rows, codes)]
    return TeacherResult(w_plus=codes[best].float().cpu(), image=image[0].clamp(-1, 1).cpu(), metrics=metrics,
                         candidates=candidates)


def _refine(G, prob, cfg: TeacherConfig, steps: int, w_e: torch.Tensor, seed: int, key, timer: StepTimer,
            device: torch.device) -> tuple[torch.Tensor, list[dict]]:
    """``replace``: E(x), its projection over ``steps`` steps and their eq. 4 interpolations, with rows."""
    codes, rows = [w_e[0]], [{"step": "encoder", "seed": 0}]
    if steps:
        gens = seed_generators(seed, 1, key=key, device=device)
        settings = ProjectorSettings.garbin(cfg.replace(proj_steps=steps))
        with timer("projector"):
            w_f = project(G, lambda x: prob.loss(x)["total"], w_e, w_std=cfg.w_std, gens=gens, settings=settings,
                          amp=cfg.amp).w
        interp, names = interpolation_candidates(w_f, w_e, cfg.interp_layers, cfg.interp_alphas)
        codes += [w_f[0], *interp[0]]
        rows += [{"step": "projector", "seed": 0}] + [{"step": n, "seed": 0} for n in names]
    return torch.stack(codes), rows
