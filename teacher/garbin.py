"""Garbin et al.'s teacher, steps 1-3, with the seeds optimised together in batches of ``cfg.seed_batch``."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from render2style.teacher.common import StepTimer, seed_generators, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.csanns import csanns_step
from render2style.teacher.losses import TeacherLoss
from render2style.teacher.projector import ProjectorSettings, project
from render2style.teacher.sampling import sampling_step
from render2style.teacher.select import interpolation_candidates


def garbin_proposals(G, loss: TeacherLoss, cfg: TeacherConfig, seed: int, key: Sequence[int], timer: StepTimer,
                     device: torch.device, step1_extra: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, list[dict], dict]:
    """Steps 1-3 for ``cfg.n_seeds`` seeds of the render ``key``: every proposal as W+ ``[M, L, D]``, one
    dict per proposal (``step``, ``seed``) and CS-ANNS statistics (device tensors). ``step1_extra`` (W+
    ``[1, L, D]``, the flywheel's E(x)) is one more step-1 candidate: it replaces a seed's best sample
    when its eq. 1 loss is lower."""
    codes, rows = [], []
    stats = {"csanns_max_proposal_weight": [], "csanns_max_abs_beta": [], "csanns_improvements": []}
    settings = ProjectorSettings.garbin(cfg)
    no_landmarks = lambda x: loss(x)["total"]  # noqa: E731  (eq. 1 with λ_landm = 0)
    if step1_extra is not None:
        with torch.no_grad():
            extra_loss = no_landmarks(synthesize(G, step1_extra, cfg.amp))
    for start in range(0, cfg.n_seeds, cfg.seed_batch):
        n = min(cfg.seed_batch, cfg.n_seeds - start)
        gens = seed_generators(seed, n, offset=start, key=key, device=device)
        with timer("sampling"):
            w_s, loss_s = sampling_step(G, loss, cfg, gens)
            if step1_extra is not None:
                w_s = torch.where((extra_loss < loss_s)[:, None, None], step1_extra.expand_as(w_s), w_s)
        with timer("csanns"):
            w_n, _, cs = csanns_step(G, loss, cfg, w_s, gens)
        with timer("projector"):
            w_f = project(G, no_landmarks, w_n, w_std=cfg.w_std, gens=gens, settings=settings, amp=cfg.amp).w
        interp, names = interpolation_candidates(w_f, w_n, cfg.interp_layers, cfg.interp_alphas)
        for i in range(n):
            steps = [("sampling", w_s[i]), ("csanns", w_n[i]), ("projector", w_f[i])]
            steps += [(name, interp[i, j]) for j, name in enumerate(names)]
            for name, w in steps:
                codes.append(w)
                rows.append({"step": name, "seed": start + i})
        stats["csanns_max_proposal_weight"].append(cs["max_proposal_weight"])
        stats["csanns_max_abs_beta"].append(cs["max_abs_beta"])
        stats["csanns_improvements"].append(cs["improvements"])
    return torch.stack(codes), rows, stats
