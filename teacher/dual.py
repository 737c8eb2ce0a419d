"""The dual-generator teacher (Wang et al. 2023, §3.3): fit the render in G_rendering, decode the code with G_real.

G_rendering is G_real fine-tuned on renders with the mapping network frozen (``train_generator.py --preset
wang``), so one W+ code means the same person in both. The search runs in G_rendering, where the render is in
domain: Wang's projection (``search="projector"``: W+ from w̄, ``cfg.dual_steps`` = 500 steps of the official
projector's schedule, noise maps fitted with the autocorrelation regularization λ_n = ``cfg.proj_noise_reg`` =
1e5, loss LPIPS alone as eq. 4 when ``cfg.dual_lpips_only``) or Garbin et al.'s steps 1-4 (``"garbin"``). The
target image is G_real(w*) with G_real's stored noise: like Wang et al., the fitted noise maps are not used.
The loss is the teacher's masked loss (the render's face ∪ hair region, as for every method here; Wang et al.
fit whole portraits). Without perceptual terms (the demo option) the YUV terms of eq. 1 stay on.
"""
from __future__ import annotations

import logging

import torch

from render2style.teacher.common import synthesize
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.losses import resolve_perceptual
from render2style.teacher.methods import DUAL_SEARCHES
from render2style.teacher.run import build_problem, frozen, run_teacher

log = logging.getLogger(__name__)


def check_generator_pair(g_rendering, g_real, rendering_name: str, real_name: str) -> None:
    """Both generators must share the W+ shape; a different mapping network (W spaces not shared) is logged."""
    shape_r, shape = (g_rendering.size, g_rendering.n_latent, g_rendering.style_dim), (g_real.size, g_real.n_latent,
                                                                                      g_real.style_dim)
    if shape_r != shape:
        raise ValueError(f"{rendering_name}: the rendering generator is (size, n_latent, style_dim) = {shape_r}, "
                         f"but the real generator {real_name} is {shape}; the dual teacher needs one W+ space "
                         "(fine-tune the real generator with train_generator.py --preset wang)")
    real_mapping = g_real.style.state_dict()
    if any(not torch.equal(v.cpu(), real_mapping[k].cpu()) for k, v in g_rendering.style.state_dict().items()):
        log.warning("dual teacher: the mapping networks of %s and %s differ (Wang et al. freeze it): a W+ code may "
                    "not mean the same face in both", rendering_name, real_name)


def dual_search_config(cfg: TeacherConfig, search: str, use_lpips: bool) -> TeacherConfig:
    """The configuration of the search in G_rendering: the projector baseline's settings with ``dual_steps``
    steps (and LPIPS alone, eq. 4), or ``cfg`` itself for Garbin et al.'s pipeline."""
    if search not in DUAL_SEARCHES:
        raise ValueError(f"unknown dual search {search!r}; expected one of {DUAL_SEARCHES}")
    if search == "garbin":
        return cfg
    changes = {"proj_steps": cfg.dual_steps}
    if cfg.dual_lpips_only and use_lpips:
        changes.update(lambda_lum=0.0, lambda_col=0.0)
    return cfg.replace(**changes)


def run_dual_teacher(g_rendering, g_real, inp: TeacherInput, cfg: TeacherConfig, perceptual, *,
                     search: str = "projector", seed: int = 0, render_id: str = "", flip: bool = False
                     ) -> TeacherResult:
    """W+ target of one render fitted in ``g_rendering``; its image is ``g_real``'s.

    metrics: the search's own (``loss_*``, ``ssim``, ``seconds``, first/last projector loss; measured in
    G_rendering), ``method="dual"``, ``dual_search``, and ``target_loss_*``: the same loss terms of the target
    image G_real(w*) against the render (how far the photoreal face is from the render, by construction larger).
    """
    nets = resolve_perceptual(perceptual)
    search_cfg = dual_search_config(cfg, search, nets is not None)
    fit = run_teacher("projector" if search == "projector" else "garbin", g_rendering, inp, search_cfg, perceptual,
                      seed=seed, render_id=render_id, flip=flip)
    device = next(g_real.parameters()).device
    with frozen(g_real), torch.no_grad():
        w_plus = fit.w_plus[None].to(device)
        image = synthesize(g_real, w_plus, cfg.amp)
        terms = build_problem(g_real, inp, search_cfg, nets, device).loss(image, with_landmarks=True)
    metrics = {**fit.metrics, "method": "dual", "dual_search": search,
               **{f"target_loss_{k}": float(v[0]) for k, v in terms.items()}}
    return TeacherResult(w_plus=fit.w_plus, image=image[0].clamp(-1, 1).cpu(), metrics=metrics,
                         candidates=fit.candidates, noise=None)
