"""Pure-PyTorch versions of StyleGAN2's two custom ops: FIR up/down-sampling and the biased leaky ReLU."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR kernel (outer product of ``taps``) normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with ``kernel`` (true convolution), downsample.

    ``pad`` = (before, after), applied to both spatial axes; negative values crop.
    Output size: (H * up + pad[0] + pad[1] - kernel_size) // down + 1.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2): the activation with gain used throughout StyleGAN2."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x.dtype), negative_slope) * scale
