"""pSp encoders on an IR-SE backbone: image [B, input_nc, R, R] -> W+ codes [B, n_styles, 512].

Parameter names are pSp's (``input_layer``, ``body``, ``styles.{i}.convs``, ``styles.{i}.linear``,
``latlayer1``, ``latlayer2``; ``output_pool`` / ``output_layer_2`` / ``linear`` for the ablation
encoders), so official pSp checkpoints load with strict keys.

Style split (``style_split``): pSp's rule, clipped for short W+: styles ``0..2`` come from the
coarse map (R/16: 16x16 for a 256 input), ``3..6`` from the medium map (R/8), ``7..n_styles-1`` from
the fine map (R/4). For 18 styles (1024 generator) that is 3/4/11, for 14 (256) 3/4/7, for 10 (the 64x64
demo generator) 3/4/3; with fewer than 7 styles the fine and then the medium groups run empty.

map2style sizing (``pyramid_sizes``): each block has as many stride-2 convs as it takes to bring the
map it receives to 1x1 at the encoder's input ``resolution`` R: for R = 256, pSp's 4 / 5 / 6 convs
(16 / 32 / 64), so official checkpoints load strictly; for the 64x64 demo input, 2 / 3 / 4.
``style_channels`` is the width of those convs (pSp: 512); the final equalized linear maps it to 512.

Feature pyramid taps (body indices of the last unit of stages 2, 3, 4; see ``irse.stage_ends``):
50 layers: 6, 20, 23; 100 layers: 15, 45, 48; 152 layers: 10, 46, 49.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from render2style.encoders.irse import Flatten, make_body, make_input_layer, stage_ends
from render2style.stylegan2 import EqualLinear

COARSE_STYLES = 3
MEDIUM_STYLES = 4


def style_split(n_styles: int) -> tuple[int, int, int]:
    """Numbers of (coarse, medium, fine) styles for a W+ of ``n_styles`` layers."""
    if n_styles < 1:
        raise ValueError(f"n_styles must be >= 1, got {n_styles}")
    coarse = min(COARSE_STYLES, n_styles)
    medium = min(MEDIUM_STYLES, n_styles - coarse)
    return coarse, medium, n_styles - coarse - medium


def pyramid_sizes(resolution: int) -> tuple[int, int, int]:
    """Sides of the (coarse, medium, fine) maps for a ``resolution``² input: R/16, R/8, R/4 (rounded up,
    as the backbone's stride-2 stages do)."""
    if resolution < 16:
        raise ValueError(f"the encoder input resolution must be >= 16, got {resolution}")
    sizes, side = [], resolution
    for _ in range(4):
        side = -(-side // 2)  # ceil: 3x3 stride-2 conv with padding 1, and the stride-2 1x1 max-pool shortcut
        sizes.append(side)
    return sizes[3], sizes[2], sizes[1]


class GradualStyleBlock(nn.Module):
    """map2style: stride-2 3x3 convs + LeakyReLU from ``spatial``² down to 1x1 (``out_c`` wide), then an
    equalized linear ``out_c -> style_dim``."""

    def __init__(self, in_c: int, out_c: int, spatial: int, style_dim: int = 512):
        super().__init__()
        self.out_c = out_c
        layers: list[nn.Module] = []
        for i in range(math.ceil(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, style_dim, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"map2style reduced its input to {tuple(x.shape[-2:])}, expected 1x1: the input "
                             "image is larger than the encoder's resolution")
        return self.linear(x.flatten(1))


class _IRSEEncoderBase(nn.Module):
    def __init__(self, num_layers: int, mode: str, input_nc: int):
        super().__init__()
        if input_nc < 1:  # 3: RGB, 4: RGB + render mask (other pSp tasks: 1 sketch, 19 label maps)
            raise ValueError(f"input_nc must be >= 1, got {input_nc}")
        self.input_layer = make_input_layer(input_nc)
        self.body = make_body(num_layers, mode)


class GradualStyleEncoder(_IRSEEncoderBase):
    """pSp's encoder: feature pyramid (1x1 laterals, bilinear up-sample-add) + one map2style per style.

    ``resolution``: the input side the map2style blocks are sized for (pSp: 256); smaller inputs also
    work, larger ones are refused. ``style_channels``: width of the map2style convs (pSp: 512).
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3,
                 resolution: int = 256, style_channels: int = 512):
        super().__init__(num_layers, mode, input_nc)
        if style_channels < 1:
            raise ValueError(f"style_channels must be >= 1, got {style_channels}")
        self.n_styles = n_styles
        self.resolution = resolution
        self.split = style_split(n_styles)
        self.taps = stage_ends(num_layers)[1:]  # c1 (R/4), c2 (R/8), c3 (R/16)
        coarse, medium, _ = self.split
        sides = pyramid_sizes(resolution)
        self.styles = nn.ModuleList(
            GradualStyleBlock(512, style_channels, sides[0] if i < coarse else sides[1] if i < coarse + medium
                              else sides[2])
            for i in range(n_styles))
        # laterals only for the maps some style reads: a small generator (< 8 styles) has no fine styles,
        # and a parameter no style uses would never get a gradient (DDP refuses such parameters)
        _, medium, fine = self.split
        if medium + fine:
            self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1)
        if fine:
            self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1)

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x
        c1, c2, c3 = (feats[i] for i in self.taps)
        coarse, medium, fine = self.split
        p2 = self._upsample_add(c3, self.latlayer1(c2)) if medium + fine else None
        p1 = self._upsample_add(p2, self.latlayer2(c1)) if fine else None
        maps = [c3] * coarse + [p2] * medium + [p1] * fine
        return torch.stack([style(m) for style, m in zip(self.styles, maps)], dim=1)


class BackboneEncoderUsingLastLayerIntoW(_IRSEEncoderBase):
    """Ablation: global-pooled last feature map -> one W code [B, 512] (use with learn_in_w)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3):
        super().__init__(num_layers, mode, input_nc)
        self.n_styles = n_styles
        self.output_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = EqualLinear(512, 512, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_pool(self.body(self.input_layer(x)))
        return self.linear(x.flatten(1))


class BackboneEncoderUsingLastLayerIntoWPlus(_IRSEEncoderBase):
    """Ablation (naive W+): last feature map -> 512 -> all n_styles codes at once by one linear layer."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3):
        super().__init__(num_layers, mode, input_nc)
        self.n_styles = n_styles
        self.output_layer_2 = nn.Sequential(
            nn.BatchNorm2d(512), nn.AdaptiveAvgPool2d((7, 7)), Flatten(), nn.Linear(512 * 7 * 7, 512))
        self.linear = EqualLinear(512, 512 * n_styles, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_layer_2(self.body(self.input_layer(x)))
        return self.linear(x).view(-1, self.n_styles, 512)


ENCODERS = {cls.__name__: cls for cls in
            (GradualStyleEncoder, BackboneEncoderUsingLastLayerIntoW, BackboneEncoderUsingLastLayerIntoWPlus)}


def build_encoder(encoder_type: str, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18,
                  input_nc: int = 3, resolution: int = 256, style_channels: int = 512) -> nn.Module:
    """Encoder by pSp's ``encoder_type`` name; ``resolution`` and ``style_channels`` size the
    GradualStyleEncoder's map2style blocks (the ablation encoders have none)."""
    if encoder_type not in ENCODERS:
        raise ValueError(f"unknown encoder_type {encoder_type!r}; expected one of {sorted(ENCODERS)}")
    if encoder_type == "GradualStyleEncoder":
        return GradualStyleEncoder(num_layers, mode, n_styles, input_nc, resolution, style_channels)
    return ENCODERS[encoder_type](num_layers, mode, n_styles, input_nc)
