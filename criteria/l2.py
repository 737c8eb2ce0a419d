"""Pixel L2 (MSE), optionally weighted by a face mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from render2style.criteria.resize import resize_mask


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of images ``[B, C, H, W]``; with a mask ``[B, 1, h, w]`` in [0, 1] (resized to
    the image size) the mean is weighted by the mask and normalised by its sum, so pixels outside the
    mask do not count. Returns a scalar."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if mask is None:
        return F.mse_loss(pred, target)
    mask = resize_mask(mask, pred.shape[-2:]).to(pred.dtype).expand(pred.shape[0], 1, -1, -1)
    weighted = (mask * (pred - target) ** 2).sum()
    return weighted / (mask.sum() * pred.shape[1]).clamp_min(1e-8)
