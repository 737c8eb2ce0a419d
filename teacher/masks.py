"""Loss masks with an outward falloff and the loss preprocessing r(I * Ia) (Garbin et al. §3).

The renderer's alpha has a sharp edge; matching face boundaries needs weight just outside it, so the
mask is extended outward: the distance from the face region, remapped to [0, 1] (1 on the boundary,
0 at the farthest pixel) and raised to the 10th power, decays quickly away from the face.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from render2style.criteria.ssim import gaussian_window


def falloff_mask(mask: np.ndarray, power: float = 10.0, threshold: float = 0.5) -> np.ndarray:
    """Face mask ``[H, W]`` (binary or soft, in [0, 1]) -> float32 falloff mask ``[H, W]``.

    Inside (``mask >= threshold``) the result is 1; outside it is ``(1 - d / d_max) ** power`` with ``d``
    the Euclidean distance to the nearest inside pixel and ``d_max`` its largest value in the image,
    so it decreases monotonically outward and reaches 0 at the farthest pixel. Soft edges of ``mask``
    are kept where they exceed the falloff. An empty mask is an error.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"falloff_mask: expected a [H, W] mask, got shape {mask.shape}")
    inside = mask >= threshold
    if not inside.any():
        raise ValueError("falloff_mask: the face mask is empty (no pixel >= "
                         f"{threshold}); the teacher needs a face region")
    if inside.all():
        return np.ones_like(mask)
    dist = distance_transform_edt(~inside)
    x = 1.0 - dist / dist.max()
    return np.maximum(x ** power, mask).astype(np.float32)


def loss_mask(face_mask: np.ndarray, hair_mask: np.ndarray | None = None, include_hair: bool = True,
              power: float = 10.0) -> np.ndarray:
    """The teacher's mask Ia: falloff around the face, or around face ∪ hair when ``include_hair``
    (the hair then counts fully, so the result keeps the render's hair shape)."""
    region = np.asarray(face_mask, dtype=np.float32)
    if include_hair and hair_mask is not None:
        hair = np.asarray(hair_mask, dtype=np.float32)
        if hair.shape != region.shape:
            raise ValueError(f"hair mask shape {hair.shape} differs from face mask shape {region.shape}")
        region = np.maximum(region, hair)
    return falloff_mask(region, power=power)


def blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (``size`` taps, ``sigma`` in pixels) of every channel of ``x`` ``[B, C, H, W]``,
    reflect padding."""
    if size <= 1 or sigma <= 0:
        return x
    c, p = x.shape[1], size // 2
    g = gaussian_window(size, sigma, x.dtype, x.device)
    x = F.pad(x, (p, size - 1 - p, p, size - 1 - p), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to ``size``² (antialiased when shrinking); identity at the same size."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def preprocess(images: torch.Tensor, mask: torch.Tensor, size: int = 256, kernel: int = 7,
               sigma: float = 0.15) -> torch.Tensor:
    """r(I * Ia): mask, resample to ``size``² (antialiased), Gaussian low-pass — the input of every eq. 1 term.

    ``images`` ``[B, 3, H, W]``, ``mask`` ``[B or 1, 1, H, W]``. The paper's filter, "kernel of size 7 and
    standard deviation of 0.15", read as pixels is the identity (taps [2e-10, 1, 2e-10]), although the
    paper calls it crucial. Here ``sigma`` is relative to the kernel size: σ = 0.15 × 7 = 1.05 px, the σ
    for which 7 taps span ±3σ, applied at the loss resolution (256² in the paper). It passes the face's
    structure and removes the finest texture: a pattern at the Nyquist frequency keeps < 1 % of its
    amplitude, one at half of it (0.25 cycles per pixel) about 25 %. Filtering after the resampling
    (rather than before, at 1024²) equals a 4× wider filter at the source resolution and costs 16× less.
    """
    if mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} and images {tuple(images.shape)} differ in size")
    return blur(resize(images * mask.to(images.dtype), size), kernel, sigma * kernel)
