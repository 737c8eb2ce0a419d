"""StyleGAN2 generator (config-f) in pure PyTorch.

Parameter and buffer names follow rosinality/stylegan2-pytorch, the layout pSp, e4e and ReStyle load
(``style.*``, ``input.input``, ``conv1.*``, ``to_rgb1.*``, ``convs.*``, ``to_rgbs.*``, ``noises.noise_*``):
these names are a public format, keep them stable.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from render2style.stylegan2.ops import fused_leaky_relu, make_kernel, upfirdn2d

BLUR_KERNEL = (1, 3, 3, 1)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights scaled at run time) and an lr multiplier."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, bias=bias)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by leaky ReLU with gain sqrt(2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter used after the transposed convolution of up-sampling layers."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR up-sampling of the ToRGB skip connection."""

    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) convolution, computed one of two equal ways:

    - *fused* (the reference's): per-sample modulated weights, run as one grouped convolution;
    - *activation* modulation (StyleGAN2-ADA's non-fused path): scale the input channels by the style,
      one shared-weight convolution for the whole batch, scale the output channels by the
      demodulation coefficients rsqrt(s² · Σ_k w² + 1e-8).

    ``fused`` None (auto) takes the fused path for a batch of one (one ordinary convolution with the
    modulated weight, no passes over the activations) unless the weight needs no gradient while autograd
    records (a frozen generator being differentiated: backward then needs input gradients only, no
    per-sample weight gradients), and the activation path for larger batches; True / False force a path.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.fused: bool | None = None

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        assert c == self.in_channel, f"expected {self.in_channel} input channels, got {c}"
        s = self.modulation(style)
        fused = self.fused
        if fused is None:   # per-sample weights pay off for one sample, unless only input gradients are needed
            fused = b == 1 and (self.weight.requires_grad or not torch.is_grad_enabled())
        out = self._fused(x, s) if fused else self._activations(x, s)
        return self.blur(out) if self.upsample else out

    def _fused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weight = self.scale * self.weight * s.view(b, 1, c, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        if b > 1:   # (for b == 1, x fits as it is: reshape and view would restride the batch axis, and the
            x = x.reshape(1, b * c, h, w)       # convolutions then no longer see channels_last tensors)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight.to(x.dtype), padding=0, stride=2, groups=b)
        else:
            out = F.conv2d(x, weight.view(b * self.out_channel, c, k, k).to(x.dtype), padding=self.padding, groups=b)
        return out.view(b, self.out_channel, out.shape[2], out.shape[3]) if b > 1 else out

    def _activations(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        weight = self.scale * self.weight[0]                                   # [out, in, k, k]
        x = x * s.view(b, -1, 1, 1).to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), padding=0, stride=2)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:       # in float32 under autocast too, as the fused path's weight statistics
            with torch.autocast(device_type=x.device.type, enabled=False):
                demod = torch.rsqrt(s.float().pow(2) @ weight.float().pow(2).sum([2, 3]).t() + 1e-8)  # [b, out]
            out = out * demod.view(b, self.out_channel, 1, 1).to(out.dtype)
        return out


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned scalar."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.expand(latent.shape[0], -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv + noise + biased leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), added to the up-sampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def generator_channels(channel_multiplier: float = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature maps per resolution: 512 up to 32², then 256·cm at 64², halving per octave (config-f)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {res: min(channel_max, int(c if res <= 32 else c * channel_multiplier)) for res, c in base.items()}


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style`` (Z -> W) and the synthesis network.

    Args:
        size: output resolution, a power of two in [32, 1024]; ``n_latent = 2·log2(size) − 2``.
        style_dim: dimension of Z and W (512 in config-f).
        n_mlp: mapping layers (8).
        channel_multiplier: 2 for config-f, 1 for the smaller configs.
        lr_mlp: learning-rate multiplier of the mapping network (0.01).
        channel_max: cap on feature maps per layer (512 in config-f; smaller for tiny demo/test models).
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 blur_kernel: Sequence[int] = BLUR_KERNEL, lr_mlp: float = 0.01, channel_max: int = 512):
        super().__init__()
        if size < 8 or size > 1024 or size & (size - 1):
            raise ValueError(f"Generator size must be a power of two in [8, 1024], got {size}")
        self.size, self.style_dim = size, style_dim
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                           lr_mlp=lr_mlp, channel_max=channel_max)
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = generator_channels(channel_multiplier, channel_max)

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        #: synthesis in the channels_last memory format (on the CPU faster than NCHW at batch 1 and 8, fp32 and
        #: bf16, with and without gradients: docs/BENCHMARKS.md); False = NCHW. Images come back NCHW either way
        self.channels_last = True
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    # --- mapping -------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """Z [B, style_dim] -> W [B, style_dim], optionally truncated toward ``truncation_latent``."""
        w = self.style(z)
        if truncation != 1.0:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs truncation_latent (e.g. G.mean_latent(4096))")
            w = truncate(w, truncation_latent, truncation)
        return w

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096, seed: int | None = None) -> torch.Tensor:
        """Mean of the mapping network's output over ``n_latent`` random z: [1, style_dim]."""
        device = self.input.input.device
        gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        total = torch.zeros(1, self.style_dim, device=device)
        for start in range(0, n_latent, 8192):
            n = min(8192, n_latent - start)
            z = torch.randn(n, self.style_dim, device=device, generator=gen)
            total += self.style(z).sum(0, keepdim=True)
        return total / n_latent

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Alias of the mapping network, as in the reference code."""
        return self.style(z)

    def make_noise(self, device: torch.device | None = None) -> list[torch.Tensor]:
        """Fresh noise maps, one per layer ([1, 1, res, res])."""
        device = device or self.input.input.device
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device)
                for i in range(self.num_layers)]

    def stored_noise(self) -> list[torch.Tensor]:
        """The stored noise buffers (deterministic synthesis)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # --- synthesis -----------------------------------------------------------------------------
    def synthesis(self, latent: torch.Tensor, noise_mode: str = "const",
                  noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """W+ codes [B, n_latent, style_dim] -> images [B, 3, size, size] (range about [-1, 1]).

        noise_mode: "const" uses the stored buffers (deterministic), "random" draws fresh noise,
        "none" disables noise. An explicit ``noise`` list overrides the mode.
        """
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"expected W+ of shape [B, {self.n_latent}, {self.style_dim}], got {tuple(latent.shape)}")
        if noise is None:
            if noise_mode == "const":
                noise = self.stored_noise()
            elif noise_mode == "random":
                noise = [None] * self.num_layers
            elif noise_mode == "none":
                noise = [torch.zeros_like(n) for n in self.stored_noise()]
            else:
                raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        out = self.input(latent)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                  self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=n1)
            out = conv(out, latent[:, i + 1], noise=n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip.contiguous()

    def style_mix(self, w1: torch.Tensor, w2: torch.Tensor, crossover: int) -> torch.Tensor:
        """W+ with layers [0, crossover) from ``w1`` and [crossover, n_latent) from ``w2`` (W or W+ inputs)."""
        if not 0 <= crossover <= self.n_latent:
            raise ValueError(f"crossover must be in [0, {self.n_latent}], got {crossover}")
        w1, w2 = self._as_wplus(w1), self._as_wplus(w2)
        return torch.cat([w1[:, :crossover], w2[:, crossover:]], dim=1)

    def _as_wplus(self, w: torch.Tensor) -> torch.Tensor:
        return w.unsqueeze(1).repeat(1, self.n_latent, 1) if w.ndim == 2 else w

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
                input_is_latent: bool = False, noise: Sequence[torch.Tensor] | None = None,
                randomize_noise: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reference-compatible call (what pSp uses): ``G([codes], input_is_latent=True, randomize_noise=False)``.

        ``styles``: one or two Z ([B, D]) or W / W+ tensors; two styles are mixed at ``inject_index``
        (random when None). Returns (images, W+ latents if ``return_latents`` else None).
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation != 1.0:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs truncation_latent")
            styles = [truncate(s, truncation_latent, truncation) for s in styles]
        if len(styles) == 1:
            latent = self._as_wplus(styles[0])
        elif len(styles) == 2:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent, ()).item())
            latent = self.style_mix(styles[0], styles[1], inject_index)
        else:
            raise ValueError(f"expected 1 or 2 style tensors, got {len(styles)}")
        mode = "random" if randomize_noise else "const"
        image = self.synthesis(latent, noise_mode=mode, noise=noise)
        return image, (latent if return_latents else None)


def truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """Truncation trick: move ``w`` toward ``w_avg`` by factor ``psi`` (1 = unchanged, 0 = the mean)."""
    w_avg = w_avg.to(w.dtype)
    if w.ndim == 3 and w_avg.ndim == 2:
        w_avg = w_avg.unsqueeze(1)
    return w_avg + psi * (w - w_avg)
