"""IR / IR-SE ResNet backbones of face recognition (ArcFace), as used by pSp.

Module and parameter names follow TreB1eN's InsightFace_Pytorch, the layout of the official
``model_ir_se50.pth`` that pSp's encoder and identity loss load: ``input_layer.{0,1,2}``,
``body.N.shortcut_layer.{0,1}``, ``body.N.res_layer.{0..5}`` (``res_layer.5.fc1`` / ``fc2`` is the SE
module), ``output_layer.{0,3,4}``. These names are an API: do not rename.

Depths 50, 100 and 152 are InsightFace_Pytorch's (pretrained ArcFace weights exist for IR-SE50). The
light depths 18 and 34 take the unit counts of insightface's ``iresnet18`` / ``iresnet34`` (2-2-2-2 and
3-4-6-3) with the same units; no pretrained weights in this layout exist for them, so they start from
random weights: meant for the CPU demo and ablations (IR-SE18's body has 11M parameters, IR-SE50's 31M).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Units per stage (stride 2 at each stage's first unit); channels 64, 128, 256, 512.
STAGE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_DEPTHS = (64, 128, 256, 512)


class UnitSpec(NamedTuple):
    in_channel: int
    depth: int
    stride: int


def get_units(num_layers: int) -> list[UnitSpec]:
    """The bottleneck units of an IR-{18,34,50,100,152} body, in order."""
    if num_layers not in STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(STAGE_UNITS)}, got {num_layers}")
    units, in_channel = [], 64
    for depth, n in zip(STAGE_DEPTHS, STAGE_UNITS[num_layers]):
        units.append(UnitSpec(in_channel, depth, 2))
        units += [UnitSpec(depth, depth, 1)] * (n - 1)
        in_channel = depth
    return units


def stage_ends(num_layers: int) -> tuple[int, ...]:
    """Body indices of the last unit of each stage (50 layers: 2, 6, 20, 23)."""
    ends, total = [], -1
    for n in STAGE_UNITS[num_layers]:
        total += n
        ends.append(total)
    return tuple(ends)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class bottleneck_IR(nn.Module):  # noqa: N801  (name kept from the reference layout)
    """Improved residual unit: BN-conv3x3-PReLU-conv3x3(stride)-BN (+ SE) plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = False):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class bottleneck_IR_SE(bottleneck_IR):  # noqa: N801
    """IR unit with a squeeze-and-excitation module (``res_layer.5``)."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__(in_channel, depth, stride, se=True)


def make_input_layer(input_nc: int = 3) -> nn.Sequential:
    """conv3x3(input_nc -> 64, no bias) - BN - PReLU."""
    return nn.Sequential(nn.Conv2d(input_nc, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


def make_body(num_layers: int = 50, mode: str = "ir_se") -> nn.Sequential:
    """The residual body (``body.0`` ... ``body.23`` for 50 layers)."""
    units = {"ir": bottleneck_IR, "ir_se": bottleneck_IR_SE}
    if mode not in units:
        raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
    return nn.Sequential(*(units[mode](*u) for u in get_units(num_layers)))


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class Backbone(nn.Module):
    """Face-recognition backbone: image [B,3,S,S] (S = input_size, 112 or 224) -> unit embedding [B,512].

    ``Backbone(112, 50, "ir_se")`` has exactly the keys and shapes of ``model_ir_se50.pth``.
    """

    def __init__(self, input_size: int = 112, num_layers: int = 50, mode: str = "ir_se",
                 drop_ratio: float = 0.4, affine: bool = True):
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}")
        self.input_size = input_size
        self.input_layer = make_input_layer(3)
        self.body = make_body(num_layers, mode)
        spatial = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            Flatten(),
            nn.Linear(512 * spatial * spatial, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"Backbone expects {self.input_size}x{self.input_size} input, "
                             f"got {tuple(x.shape[-2:])}")
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, dim=1)
