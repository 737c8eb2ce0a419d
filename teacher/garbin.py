"""Garbin et al.'s teacher, steps 1-3, with the seeds optimised together in batches of ``cfg.seed_batch``, and
several renders' searches in one batch (each render with its own loss, random streams and Adam state)."""
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


def garbin_proposals(G, losses: Sequence[TeacherLoss], cfg: TeacherConfig, seed: int,
                     keys: Sequence[Sequence[int]], timer: StepTimer, device: torch.device,
                     step1_extra: torch.Tensor | None = None) -> list[tuple[torch.Tensor, list[dict], dict]]:
    """Steps 1-3 for ``cfg.n_seeds`` seeds of each render (``losses[r]``, stream key ``keys[r]``): per render,
    every proposal as W+ ``[M, L, D]``, one dict per proposal (``step``, ``seed``) and CS-ANNS statistics
    (device tensors). Step 1 runs render by render; CS-ANNS and the projector run all renders' seeds in one
    batch, each row as it would run alone. ``step1_extra`` (W+ ``[R, L, D]``, the flywheel's E(x) per render)
    is one more step-1 candidate: it replaces a seed's best sample when its eq. 1 loss is lower."""
    R = len(losses)
    if len(keys) != R or (step1_extra is not None and len(step1_extra) != R):
        raise ValueError(f"garbin_proposals: {R} losses, {len(keys)} keys"
                         + (f", {len(step1_extra)} step-1 codes" if step1_extra is not None else ""))
    out = [([], [], {"csanns_max_proposal_weight": [], "csanns_max_abs_beta": [], "csanns_improvements": []})
           for _ in range(R)]
    settings = ProjectorSettings.garbin(cfg)
    if step1_extra is not None:
        with torch.no_grad():
            extra_losses = [loss(synthesize(G, step1_extra[r:r + 1], cfg.amp))["total"]
                            for r, loss in enumerate(losses)]
    for start in range(0, cfg.n_seeds, cfg.seed_batch):
        n = min(cfg.seed_batch, cfg.n_seeds - start)
        gens = [seed_generators(seed, n, offset=start, key=key, device=device) for key in keys]
        with timer("sampling"):
            w_s = []
            for r, loss in enumerate(losses):
                w, value = sampling_step(G, loss, cfg, gens[r])
                if step1_extra is not None:
                    better = extra_losses[r] < value
                    w = torch.where(better[:, None, None], step1_extra[r:r + 1].expand_as(w), w)
                w_s.append(w)
            w_s = torch.cat(w_s)                                   # [R·n, L, D], render-major
        flat = [g for row in gens for g in row]
        batch = losses[0] if R == 1 else TeacherLoss.stack(losses, repeats=n)
        with timer("csanns"):
            w_n, _, cs = csanns_step(G, batch, cfg, w_s, flat)
        with timer("projector"):
            w_f = project(G, batch.total, w_n, w_std=cfg.w_std, gens=flat, settings=settings,
                          amp=cfg.amp).w
        interp, names = interpolation_candidates(w_f, w_n, cfg.interp_layers, cfg.interp_alphas)
        for r, (codes, rows, stats) in enumerate(out):
            for i in range(n):
                k = r * n + i
                steps = [("sampling", w_s[k]), ("csanns", w_n[k]), ("projector", w_f[k])]
                steps += [(name, interp[k, j]) for j, name in enumerate(names)]
                for name, w in steps:
                    codes.append(w)
                    rows.append({"step": name, "seed": start + i})
            part = slice(r * n, (r + 1) * n)
            stats["csanns_max_proposal_weight"].append(cs["max_proposal_weight"][part])
            stats["csanns_max_abs_beta"].append(cs["max_abs_beta"][part])
            stats["csanns_improvements"].append(cs["improvements"][part])
    return [(torch.stack(codes), rows, stats) for codes, rows, stats in out]
