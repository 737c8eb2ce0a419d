"""SSIM and MS-SSIM (Wang et al. 2004 / 2003) on batched image tensors.

Gaussian window (11 taps, sigma 1.5), constants K1 = 0.01, K2 = 0.03, statistics per channel from a
separable *valid* convolution (no padding), as in the reference implementation. The SSIM map is
averaged over channels and pixels, optionally weighted by a mask, giving one score per image.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Wang et al. 2003 weights of the five MS-SSIM scales (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``[size]``."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype)


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid Gaussian filtering of every channel of ``x`` ``[B, C, H, W]``."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int, sigma: float,
               k1: float = 0.01, k2: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM map, contrast-structure map), both ``[B, C, H - window + 1, W - window + 1]``."""
    g = gaussian_window(window, sigma, x.dtype, x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mu_x ** 2
    syy = _filter(y * y, g) - mu_y ** 2
    sxy = _filter(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    return lum * cs, cs


def _check(x: torch.Tensor, y: torch.Tensor, window: int) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim: expected two [B, C, H, W] tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim: images {tuple(x.shape[-2:])} are smaller than the {window}-tap window")


def _valid_mask(mask: torch.Tensor, window: int, shape: torch.Size) -> torch.Tensor:
    """The mask cropped to the valid region of the SSIM map (the window centres), ``[B, 1, h, w]``."""
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != shape[-2:]:
        raise ValueError(f"ssim: mask must be [B or 1, 1, {shape[-2]}, {shape[-1]}], got {tuple(mask.shape)}")
    r = window // 2
    return mask[..., r:mask.shape[-2] - (window - 1 - r), r:mask.shape[-1] - (window - 1 - r)]


def _reduce_map(m: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a ``[B, C, h, w]`` map per image; mask-weighted when a (cropped) mask is given."""
    if mask is None:
        return m.flatten(1).mean(1)
    w = mask.to(m.dtype).expand(m.shape[0], 1, *m.shape[-2:])
    return (m * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * m.shape[1]).clamp_min(1e-8)


def _reduce(scores: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return scores
    if reduction == "mean":
        return scores.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5,
         mask: torch.Tensor | None = None, reduction: str = "none") -> torch.Tensor:
    """SSIM per image ``[B]`` (or its mean) of images ``[B, C, H, W]`` whose values span ``data_range``
    (2 for [-1, 1] images). ``mask`` ``[B or 1, 1, H, W]`` weights the SSIM map at each window centre."""
    _check(x, y, window)
    x, y = x.float(), y.float()
    s, _ = _ssim_maps(x, y, data_range, window, sigma)
    m = None if mask is None else _valid_mask(mask.float(), window, x.shape)
    return _reduce(_reduce_map(s, m), reduction)


def ms_scales(size: int, window: int = 11, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales for images whose smaller side is ``size``: at most ``max_scales``, and
    only as many as keep the coarsest image at least one window wide (each scale halves the size)."""
    n = 1
    while n < max_scales and size // 2 ** n >= window:
        n += 1
    return n


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5,
            mask: torch.Tensor | None = None, reduction: str = "none",
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM per image ``[B]``: prod_j cs_j^w_j over the finer scales times SSIM^w at the coarsest.

    Images smaller than the 5-scale minimum (``window · 16`` pixels) use fewer scales (see
    :func:`ms_scales`), with the first weights renormalised to sum to 1; negative contrast-structure
    values are clamped to 0 before the fractional powers. ``mask`` is average-pooled with the images.
    """
    _check(x, y, window)
    x, y = x.float(), y.float()
    n = ms_scales(min(x.shape[-2:]), window, len(weights))
    w = torch.tensor(weights[:n], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    m = None if mask is None else mask.float()
    factors = []
    for j in range(n):
        s, cs = _ssim_maps(x, y, data_range, window, sigma)
        vm = None if m is None else _valid_mask(m, window, x.shape)
        factors.append(_reduce_map(s if j == n - 1 else cs, vm).clamp_min(0))
        if j < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            m = None if m is None else F.avg_pool2d(m, 2)
    scores = torch.stack(factors, dim=1).pow(w).prod(dim=1)
    return _reduce(scores, reduction)
