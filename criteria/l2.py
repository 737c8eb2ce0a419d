"""Pixel L2 (MSE), optionally weighted by a face mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from render2style.criteria.resize import resize_mask


def masked_se(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared errors, weight it is a mean over) of images ``[B, C, H, W]``: without a mask all
    elements count; a mask ``[B, 1, h, w]`` in [0, 1] (resized to the image size) weights each pixel.
    Split so that a distributed run can normalise by the weight of the global batch."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if mask is None:
        return ((pred - target) ** 2).sum(), torch.tensor(float(pred.numel()), device=pred.device)
    mask = resize_mask(mask, pred.shape[-2:]).to(pred.dtype).expand(pred.shape[0], 1, -1, -1)
    return (mask * (pred - target) ** 2).sum(), (mask.sum() * pred.shape[1]).detach()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of images ``[B, C, H, W]``; with a mask ``[B, 1, h, w]`` in [0, 1] (resized to
    the image size) the mean is weighted by the mask and normalised by its sum, so pixels outside the
    mask do not count. Returns a scalar."""
    if mask is None:
        return F.mse_loss(pred, target)
    total, weight = masked_se(pred, target, mask)
    return total / weight.clamp_min(1e-8)
