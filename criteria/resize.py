"""Resizing images and masks to the resolution a loss works at."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square-resize ``[B, C, H, W]``: average pooling when shrinking (pSp's ``face_pool``), bilinear when growing."""
    if x.shape[-2:] == (size, size):
        return x
    if x.shape[-2] >= size and x.shape[-1] >= size:
        return F.adaptive_avg_pool2d(x, (size, size))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A mask ``[B, 1, h, w]`` (or ``[B, h, w]``) resized bilinearly to ``size`` = (H, W)."""
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [B, 1, H, W] or [B, H, W], got {tuple(mask.shape)}")
    mask = mask.float()
    if mask.shape[-2:] == tuple(size):
        return mask
    return F.interpolate(mask, size=tuple(size), mode="bilinear", align_corners=False)
