"""Image grids for TensorBoard and the experiment folder: one row per sample, input | target | output."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid

from render2style.utils.io import atomic_save_image


def comparison_grid(x: torch.Tensor, target: torch.Tensor, y_hat: torch.Tensor, max_rows: int = 4) -> torch.Tensor:
    """``[3, H, W]`` float grid in [0, 1]; every image is resized to the target's size; a 4-channel
    input shows its RGB channels."""
    n = min(max_rows, x.shape[0])
    size = target.shape[-2:]

    def prep(t: torch.Tensor) -> torch.Tensor:
        t = t[:n, :3].detach().float().cpu()
        if t.shape[-2:] != size:
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
        return ((t.clamp(-1, 1) + 1) / 2)

    rows = torch.stack([prep(x), prep(target), prep(y_hat)], dim=1).flatten(0, 1)
    return make_grid(rows, nrow=3, padding=2, pad_value=1.0)


def save_grid(grid: torch.Tensor, path: str | os.PathLike) -> None:
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    atomic_save_image(Image.fromarray(arr), path)
