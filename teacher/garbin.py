"""Garbin et al.'s teacher, steps 1-4, with the seeds optimised together in batches of ``cfg.seed_batch``."""
from __future__ import annotations

import logging

import torch

from render2style.teacher.common import StepTimer, seed_generators
from render2style.teacher.config import TeacherConfig
from render2style.teacher.csanns import csanns_step
from render2style.teacher.losses import TeacherLoss
from render2style.teacher.projector import project
from render2style.teacher.sampling import sampling_step
from render2style.teacher.select import interpolation_candidates

log = logging.getLogger(__name__)


def garbin_proposals(G, loss: TeacherLoss, cfg: TeacherConfig, seed: int, timer: StepTimer,
                     device: torch.device) -> tuple[torch.Tensor, list[dict], dict]:
    """Steps 1-3 for ``cfg.n_seeds`` seeds: all proposals as W+ ``[M, L, D]``, one dict per proposal
    (``step``, ``seed``) and statistics: each step's best loss per seed (as optimised: step 1 with
    landmarks when enabled, step 3 with its own noise maps) and CS-ANNS checks."""
    codes, rows = [], []
    stats = {"loss_sampling": [], "loss_csanns": [], "loss_projector": [], "csanns_max_abs_beta": 0.0,
             "csanns_max_weight_sum_error": 0.0, "csanns_improvements": 0}
    no_landmarks = lambda x: loss(x)["total"]  # noqa: E731  (eq. 1 with λ_landm = 0)
    for start in range(0, cfg.n_seeds, cfg.seed_batch):
        n = min(cfg.seed_batch, cfg.n_seeds - start)
        gens = seed_generators(seed, n, offset=start)
        with timer("sampling"):
            w_s, l_s = sampling_step(G, loss, cfg, gens, device)
        with timer("csanns"):
            w_n, l_n, cs = csanns_step(G, loss, cfg, w_s, gens)
        with timer("projector"):
            w_f, l_f, _ = project(G, no_landmarks, w_n, cfg.w_std, gens, cfg.proj_steps, cfg.proj_lr, cfg.proj_noise,
                                  cfg.proj_noise_ramp, cfg.proj_lr_rampdown, cfg.proj_lr_rampup, cfg.proj_noise_reg,
                                  cfg.proj_optimize_noise, cfg.amp)
        interp, names = interpolation_candidates(w_f, w_n, cfg.interp_layers, cfg.interp_alphas)
        for i in range(n):
            steps = [("sampling", w_s[i]), ("csanns", w_n[i]), ("projector", w_f[i])]
            steps += [(name, interp[i, j]) for j, name in enumerate(names)]
            for name, w in steps:
                codes.append(w)
                rows.append({"step": name, "seed": start + i})
        stats["loss_sampling"] += l_s.tolist()
        stats["loss_csanns"] += l_n.tolist()
        stats["loss_projector"] += l_f.tolist()
        stats["csanns_max_abs_beta"] = max(stats["csanns_max_abs_beta"], cs["max_abs_beta"])
        stats["csanns_max_weight_sum_error"] = max(stats["csanns_max_weight_sum_error"], cs["max_weight_sum_error"])
        stats["csanns_improvements"] += cs["improvements"]
        log.debug("seeds %d-%d: sampling %.4f  csanns %.4f  projector %.4f", start, start + n - 1,
                  l_s.mean(), l_n.mean(), l_f.mean())
    return torch.stack(codes), rows, stats
