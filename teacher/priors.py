"""The generator's W-space statistics the teacher needs: centroids, control vectors, mean and spread."""
from __future__ import annotations

import logging

import torch

from render2style.teacher import control_vectors
from render2style.teacher.config import TeacherConfig

log = logging.getLogger(__name__)


@torch.no_grad()
def resolve_priors(G, cfg: TeacherConfig, device: torch.device | str = "cpu", seed: int = 0) -> TeacherConfig:
    """A copy of ``cfg`` with ``centroids``, ``control_vectors``, ``w_avg`` and ``w_std`` filled in where None:
    k-means centroids and principal directions of ``cfg.prior_samples`` mapped z, their mean, and the
    StyleGAN2 projector's spread ``sqrt(E‖w − w̄‖²)``. Call once per generator and reuse the result."""
    changes = {}
    if cfg.centroids is None:
        log.info("teacher: computing %d k-means centroids in W (%d samples)", cfg.n_centroids, cfg.prior_samples)
        changes["centroids"] = control_vectors.compute_centroids(G, cfg.n_centroids, cfg.prior_samples, seed, device)
    if cfg.control_vectors is None:
        log.info("teacher: using the first %d principal directions of W as control vectors", cfg.n_control)
        changes["control_vectors"] = (control_vectors.pca_directions(G, cfg.n_control, cfg.prior_samples, seed, device)
                                      if cfg.n_control > 0 else torch.zeros(0, G.style_dim))
    if cfg.w_avg is None or cfg.w_std is None:
        w = control_vectors.sample_w(G, cfg.prior_samples, seed + 1, device)
        w_avg = w.mean(0)
        changes.setdefault("w_avg", w_avg if cfg.w_avg is None else cfg.w_avg)
        if cfg.w_std is None:
            changes["w_std"] = float((w - w_avg).pow(2).sum(1).mean().sqrt())
    out = cfg.replace(**changes)
    for name, t in (("centroids", out.centroids), ("control_vectors", out.control_vectors)):
        if t.ndim != 2 or t.shape[1] != G.style_dim:
            raise ValueError(f"TeacherConfig.{name}: expected [n, {G.style_dim}], got {tuple(t.shape)}")
    return out
