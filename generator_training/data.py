"""Training images for the GAN: any render source (``datasets/``) as square RGB tensors at the training size.

Each image is centre-cropped to a square, resized (area filter down, bilinear up) and mapped to [-1, 1];
decoding happens in ``__getitem__``, so in the DataLoader workers. ``mirror`` doubles the dataset with
the horizontal mirror images (StyleGAN2-ADA's ``--mirror``): item ``i + n`` is item ``i`` flipped, so the
flips are part of the (seeded, resumable) data order rather than a random draw.
"""
from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
from torch.utils.data import Dataset

from render2style.datasets.training_dataset import resize, to_tensor


def centre_crop(rgb: np.ndarray) -> np.ndarray:
    """The largest centred square of an ``[H, W, C]`` array."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top:top + s, left:left + s]


class GANImages(Dataset):
    """``source`` (a render source: ``ids``, ``__getitem__ -> Render``) as float ``[3, size, size]`` images in
    [-1, 1]; ids in ``exclude`` (screened out) are left out."""

    def __init__(self, source, size: int, mirror: bool = False, exclude: Collection[str] = ()):
        self.source, self.size, self.mirror = source, size, mirror
        excluded = set(exclude)
        self.indices = [i for i, rid in enumerate(source.ids) if rid not in excluded]
        if not self.indices:
            raise ValueError(f"{getattr(source, 'root', source)}: no usable images")

    def __len__(self) -> int:
        return len(self.indices) * (2 if self.mirror else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.indices)
        flip = index >= n
        rgb = resize(centre_crop(self.source[self.indices[index % n]].rgb), self.size)
        if flip:
            rgb = rgb[:, ::-1]
        return to_tensor(np.ascontiguousarray(rgb))
