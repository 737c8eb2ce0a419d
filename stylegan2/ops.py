"""Pure-PyTorch versions of StyleGAN2's two custom ops: FIR up/down-sampling and the biased leaky ReLU.

``upfirdn2d`` computes up-sampling by polyphase filtering (one small grouped convolution per output phase,
interleaved by ``pixel_shuffle``) instead of the reference's zero insertion followed by a dense convolution,
whose multiply-adds mostly hit the inserted zeros; ``upfirdn2d_reference`` keeps the reference computation.
"""
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


def _pad_crop(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) both spatial axes of ``x`` by ``before`` / ``after``."""
    return F.pad(x, [before, after, before, after])


def upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
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
    x = _pad_crop(x, *pad)
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def _phase_taps(k: int, up: int, pad0: int, shift: int) -> list[tuple[int, int, int]]:
    """For each output phase a (output index up·i + a − shift): (first tap t0, first source offset d0, taps n);
    output up·i + a − shift reads x[i + d0 + j]·kflip[t0 + up·j], j < n."""
    phases = []
    for a in range(up):
        t0 = (pad0 + shift - a) % up
        phases.append((t0, (a - shift + t0 - pad0) // up, len(range(t0, k, up))))
    return phases


def polyphase_plan(k: int, up: int, pad0: int) -> tuple[int, int, int, list[tuple[int, int, int]]]:
    """(shift, window start dmin, window width, phase taps) with the narrowest common window over phases."""
    best = None
    for shift in range(up):
        phases = _phase_taps(k, up, pad0, shift)
        dmin = min(d0 for _, d0, n in phases if n)
        dmax = max(d0 + n - 1 for _, d0, n in phases if n)
        if best is None or dmax - dmin < best[2] - 1:
            best = (shift, dmin, dmax - dmin + 1, phases)
    return best


def upsample_polyphase(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """``upfirdn2d_reference(x, kernel, up, 1, pad)`` without zero insertion: the up² phase kernels of the
    flipped kernel as one grouped convolution (channel multiplier up²), interleaved by ``pixel_shuffle``.

    Each output pixel costs (kernel_size / up)² multiply-adds instead of kernel_size². Needs an output size
    divisible by ``up``.
    """
    b, c, h, w = x.shape
    k = kernel.shape[0]
    out = h * up + pad[0] + pad[1] - k + 1
    if kernel.shape[0] != kernel.shape[1] or h != w or out % up:
        raise ValueError(f"polyphase up-sampling needs a square kernel and input and an output size divisible by "
                         f"{up}; got kernel {tuple(kernel.shape)}, input {h}x{w}, output {out}")
    shift, dmin, width, phases = polyphase_plan(k, up, pad[0])
    blocks = out // up + (1 if shift else 0)      # a shifted grid needs one more block, cropped below
    kf = torch.flip(kernel, [0, 1]).to(x.dtype)
    weight = kf.new_zeros(up, up, width, width)                  # [phase y, phase x, window y, window x]
    for a, (ty, dy, ny) in enumerate(phases):
        for b_, (tx, dx, nx) in enumerate(phases):
            weight[a, b_, dy - dmin: dy - dmin + ny, dx - dmin: dx - dmin + nx] = kf[ty::up, tx::up]
    weight = weight.view(1, up * up, width, width).repeat(c, 1, 1, 1).view(c * up * up, 1, width, width)
    xp = F.pad(x, [-dmin, blocks - 1 + dmin + width - w, -dmin, blocks - 1 + dmin + width - h])
    y = F.pixel_shuffle(F.conv2d(xp, weight, groups=c), up)
    return y[:, :, shift: shift + out, shift: shift + out] if shift else y


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``upfirdn2d_reference`` (same arguments, same result), up-sampling by polyphase filtering where it
    applies (square kernel and input, output size divisible by ``up``)."""
    if up > 1:
        h, k = x.shape[2], kernel.shape[0]
        if kernel.shape[0] == kernel.shape[1] and x.shape[2] == x.shape[3] and (h * up + sum(pad) - k + 1) % up == 0:
            y = upsample_polyphase(x, kernel, up, pad)
            return y[:, :, ::down, ::down]
    return upfirdn2d_reference(x, kernel, up, down, pad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2): the activation with gain used throughout StyleGAN2.

    Leaky ReLU is positively homogeneous, so a positive gain is applied inside, fused into the bias add
    (two passes over ``x`` instead of three).
    """
    bias = bias.view([1, -1] + [1] * (x.ndim - 2))
    if scale > 0:
        return F.leaky_relu_(torch.add((bias * scale).to(x.dtype), x, alpha=scale), negative_slope)
    return F.leaky_relu(x + bias.to(x.dtype), negative_slope) * scale
