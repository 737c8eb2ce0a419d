"""StyleGAN2 discriminator (residual architecture, config-f) in pure PyTorch, in the rosinality layout.

Parameter and buffer names are those of the ``d`` entry of rosinality/stylegan2-pytorch checkpoints
(``convs.0.*`` from-RGB layer, ``convs.<i>.conv1/conv2/skip.*`` residual blocks, ``final_conv.*``,
``final_linear.*``), so such a state dict loads strictly. Layers: equalized-lr convolutions, FIR blur
before every stride-2 convolution, residual blocks scaled by 1/√2, minibatch standard deviation (group 4,
one feature) before the last 3×3 convolution and the two linear layers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from render2style.stylegan2.model import BLUR_KERNEL, Blur, EqualLinear, FusedLeakyReLU, generator_channels


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (weights scaled by 1/√fan_in at run time)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, (self.weight * self.scale).to(x.dtype), bias=bias, stride=self.stride,
                        padding=self.padding)


class ConvLayer(nn.Sequential):
    """[blur, stride-2 conv] when ``downsample`` else a same-size conv, then bias + leaky ReLU when ``activate``
    (the bias then lives in the activation, as in the reference layout)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[int] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3×3 convolutions (the second halves the resolution) plus a 1×1 down-sampled skip, summed / √2."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_features: int = 1) -> torch.Tensor:
    """Append ``n_features`` channels holding the standard deviation of the features over groups of
    ``min(group_size, batch)`` samples (sample ``i`` is grouped with ``i + k·batch/group``, as the reference)."""
    b, c, h, w = x.shape
    group = min(b, group_size)
    if b % group:
        raise ValueError(f"minibatch_stddev: batch {b} is not a multiple of the group size {group}")
    y = x.view(group, -1, n_features, c // n_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    return torch.cat([x, y.repeat(group, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 discriminator for ``size``² RGB images in [-1, 1] -> one logit per image ``[B, 1]``.

    ``size`` a power of two ≥ 8; channels per resolution as the generator's (``generator_channels``:
    config-f is ``channel_multiplier=2``, ``channel_max=512``).
    """

    def __init__(self, size: int, channel_multiplier: float = 2, blur_kernel: Sequence[int] = BLUR_KERNEL,
                 channel_max: int = 512, stddev_group: int = 4):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"Discriminator size must be a power of two >= 8, got {size}")
        self.size = size
        self.config = dict(size=size, channel_multiplier=channel_multiplier, channel_max=channel_max)
        channels = generator_channels(channel_multiplier, channel_max)
        layers: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(int(math.log2(size)), 2, -1):
            layers.append(ResBlock(in_channel, channels[2 ** (i - 1)], blur_kernel))
            in_channel = channels[2 ** (i - 1)]
        self.convs = nn.Sequential(*layers)
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, channels[4], activation="fused_lrelu"),
                                          EqualLinear(channels[4], 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"Discriminator({self.size}) expects [B, 3, {self.size}, {self.size}], "
                             f"got {tuple(images.shape)}")
        x = minibatch_stddev(self.convs(images), self.stddev_group)
        return self.final_linear(self.final_conv(x).flatten(1))


def infer_discriminator_config(state: dict[str, torch.Tensor], source: str = "<state dict>") -> dict:
    """Discriminator constructor arguments implied by a rosinality-layout ``d`` state dict."""
    try:
        n_blocks = len({k.split(".")[1] for k in state if k.startswith("convs.") and ".conv1." in k})
        size = 2 ** (n_blocks + 2)
        top, bottom = state["convs.0.0.weight"].shape[0], state["final_conv.0.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"{source}: not a StyleGAN2 discriminator in the rosinality layout (missing key {e})") from e
    base = generator_channels(1, 10 ** 9)[size]           # channels at `size` for multiplier 1, no cap
    multiplier = top / base if size > 32 and top < bottom else 2
    return dict(size=size, channel_multiplier=multiplier, channel_max=bottom)


def load_discriminator(path, device: str | torch.device = "cpu") -> Discriminator:
    """The ``d`` entry of a rosinality checkpoint (``torch.load(weights_only=True)``), loaded strictly with
    the architecture read from the tensor shapes."""
    from render2style.stylegan2.checkpoint import read_checkpoint
    ckpt = read_checkpoint(path, expected="a rosinality StyleGAN2 training checkpoint with a 'd' entry")
    if "d" not in ckpt:
        raise ValueError(f"{path}: no 'd' (discriminator) entry; found keys {sorted(ckpt)[:8]}")
    state = ckpt["d"]
    D = Discriminator(**infer_discriminator_config(state, str(path)))
    try:
        D.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:3]
        raise ValueError(f"{path}: the 'd' entry does not match Discriminator({D.config}): "
                         f"{' '.join(s.strip() for s in first)}") from None
    return D.to(device).eval()
