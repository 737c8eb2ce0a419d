"""Image2StyleGAN baseline (Abdal et al. 2019): W+ from w̄, VGG-16 perceptual loss + λ·MSE, Adam.

L = Σ_j mean‖F_j(x) − F_j(y)‖² over VGG-16 conv1_1, conv1_2, conv3_2, conv4_2 (after ReLU, as the
Keras layers the paper used) on 256² images + λ_mse · mean‖G(w) − I‖² at full resolution, λ_mse = 1.
Both images are multiplied by the teacher's mask Ia, like every other teacher loss here.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from render2style.teacher.common import synthesize
from render2style.teacher.masks import resize

#: indices in torchvision's ``vgg16().features`` of the ReLU after conv1_1, conv1_2, conv3_2, conv4_2
VGG_TAPS = (1, 3, 13, 20)
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@functools.lru_cache(maxsize=8)
def _normalisation(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std on ``device``, copied once (no host-to-device copy per step)."""
    return _MEAN.to(device, dtype), _STD.to(device, dtype)


def vgg_features(vgg: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Activations at :data:`VGG_TAPS` of images ``[B, 3, H, W]`` in [-1, 1]."""
    mean, std = _normalisation(x.device, x.dtype)
    x = ((x + 1) / 2 - mean) / std
    feats = []
    for i, layer in enumerate(vgg[:VGG_TAPS[-1] + 1]):
        x = layer(x)
        if i in VGG_TAPS:
            feats.append(x)
    return feats


class Image2StyleGANLoss:
    """Per-sample ``[B]`` Image2StyleGAN loss against one masked target (features cached)."""

    def __init__(self, target: torch.Tensor, mask: torch.Tensor, vgg: nn.Module | None, size: int = 256,
                 lambda_mse: float = 1.0):
        self.mask, self.vgg, self.size, self.lambda_mse = mask.float(), vgg, size, lambda_mse
        self.target = target.float() * self.mask
        with torch.no_grad():
            self.target_feats = vgg_features(vgg, resize(self.target, size)) if vgg is not None else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() * self.mask
        loss = self.lambda_mse * (x - self.target).pow(2).flatten(1).mean(1)
        if self.vgg is not None:
            for f, t in zip(vgg_features(self.vgg, resize(x, self.size)), self.target_feats):
                loss = loss + (f - t).pow(2).flatten(1).mean(1)
        return loss


def image2stylegan(G, loss_fn: Image2StyleGANLoss, w_avg: torch.Tensor, steps: int = 5000, lr: float = 0.01,
                   amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise W+ ``[1, L, D]`` from w̄ with Adam (β 0.9/0.999, ε 1e-8). Returns (W+, loss per step
    as a device tensor)."""
    w = w_avg.reshape(1, 1, -1).repeat(1, G.n_latent, 1).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    history = []
    for _ in range(steps):
        loss = loss_fn(synthesize(G, w, amp)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.detach())
    return w.detach(), torch.stack(history) if history else torch.zeros(0)
