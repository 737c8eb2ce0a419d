"""Differentiable augmentation of D's inputs: StyleGAN2-ADA's pipeline with its p heuristic, or DiffAugment.

``AdaAugment(p)`` (Karras et al. 2020, "Training GANs with limited data", the ``bgc`` pipeline): each
transformation is applied to each image with probability p: x-flip, 90° rotations, integer translation
(±12.5 %), isotropic scaling (log-normal, σ = 0.2·ln 2), rotation (uniform, applied twice with
p_rot = 1 − √(1 − p)), anisotropic scaling, fractional translation (σ = 0.125); then brightness (σ 0.2),
contrast (log-normal, σ 0.5·ln 2), luma flip, hue rotation (uniform ±π) and saturation (log-normal, σ ln 2).
The geometric ones are composed into one affine matrix per image and resampled once (bilinear,
reflection padding; the original uses a wavelet up/down-sampling around the resample); the colour ones
into one 4×4 colour matrix. At p = 0 the images pass through unchanged.

``AdaController``: p is adjusted every ``interval`` D steps from r_t = E[sign(D(real))] so that r_t stays at
``target`` (0.6): p ← clamp(p + sign(r_t − target) · N / (speed_kimg · 1000), 0, 1), N the images seen since
the last adjustment.

``diff_augment(x, policy)`` (Zhao et al. 2020): colour (brightness, saturation, contrast), translation
(⅛ of the size, zero padding) and cutout (a square of half the size), on every image.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: ITU-R BT.601 luma axis (normalised), the axis of the luma flip, hue rotation and saturation
_LUMA = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)


def _eye(n: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.eye(n, device=device).expand(batch, n, n).clone()


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(3, tx.shape[0], tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(3, sx.shape[0], sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(3, theta.shape[0], theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _where(mask: torch.Tensor, value: torch.Tensor, default: float) -> torch.Tensor:
    return torch.where(mask, value, torch.full_like(value, default))


class AdaAugment(nn.Module):
    """StyleGAN2-ADA's ``bgc`` augmentation with probability ``p`` (a Python float: reading it needs no device
    sync; ``AdaController`` sets it). ``forward(images [B, C, H, W] in [-1, 1]) -> images`` of the same shape."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.p
        if p <= 0:
            return images
        images = self._geometric(images, p)
        return self._colour(images, p)

    @staticmethod
    def _draw(batch: int, p: float, device: torch.device) -> torch.Tensor:
        return torch.rand(batch, device=device) < p

    def _geometric(self, x: torch.Tensor, p: float) -> torch.Tensor:
        b, _, h, w = x.shape
        dev = x.device
        m = _eye(3, b, dev)                                   # maps output pixel coords to input coords
        flip = _where(self._draw(b, p, dev), 1 - 2 * torch.randint(0, 2, (b,), device=dev).float(), 1.0)
        m = m @ _scale2d(flip, torch.ones_like(flip))
        rot90 = _where(self._draw(b, p, dev), torch.randint(0, 4, (b,), device=dev).float(), 0.0)
        m = m @ _rotate2d(rot90 * (math.pi / 2))
        # integer translation, in pixels (±12.5 % of the size, rounded)
        t = (torch.rand(b, 2, device=dev) * 2 - 1) * 0.125
        t = torch.where(self._draw(b, p, dev)[:, None], t, torch.zeros_like(t))
        m = m @ _translate2d(torch.round(t[:, 0] * w), torch.round(t[:, 1] * h))
        s = _where(self._draw(b, p, dev), torch.exp2(torch.randn(b, device=dev) * 0.2), 1.0)
        m = m @ _scale2d(s, s)
        p_rot = 1 - math.sqrt(max(0.0, 1 - p))
        theta = _where(self._draw(b, p_rot, dev), (torch.rand(b, device=dev) * 2 - 1) * math.pi, 0.0)
        m = m @ _rotate2d(-theta)
        a = _where(self._draw(b, p, dev), torch.exp2(torch.randn(b, device=dev) * 0.2), 1.0)
        m = m @ _scale2d(a, 1 / a)
        theta = _where(self._draw(b, p_rot, dev), (torch.rand(b, device=dev) * 2 - 1) * math.pi, 0.0)
        m = m @ _rotate2d(-theta)
        t = torch.randn(b, 2, device=dev) * 0.125
        t = torch.where(self._draw(b, p, dev)[:, None], t, torch.zeros_like(t))
        m = m @ _translate2d(t[:, 0] * w, t[:, 1] * h)
        changed = (m - _eye(3, b, dev)).abs().flatten(1).amax(1) > 1e-6   # the others pass through exactly
        # pixel coordinates centred on the image -> grid_sample's normalised [-1, 1] coordinates
        to_pix = _scale2d(torch.full((b,), w / 2, device=dev), torch.full((b,), h / 2, device=dev))
        to_norm = _scale2d(torch.full((b,), 2 / w, device=dev), torch.full((b,), 2 / h, device=dev))
        theta_grid = (to_norm @ m @ to_pix)[:, :2, :].to(x.dtype)
        grid = F.affine_grid(theta_grid, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return torch.where(changed.view(b, 1, 1, 1), out, x)

    def _colour(self, x: torch.Tensor, p: float) -> torch.Tensor:
        b, c = x.shape[:2]
        if c != 3:
            return x
        dev = x.device
        v = _LUMA.to(dev)
        vv = torch.outer(v, v)
        mat = _eye(4, b, dev)
        bright = _where(self._draw(b, p, dev), torch.randn(b, device=dev) * 0.2, 0.0)
        shift = _eye(4, b, dev)
        shift[:, :3, 3] = bright[:, None]
        mat = shift @ mat
        contrast = _where(self._draw(b, p, dev), torch.exp2(torch.randn(b, device=dev) * 0.5), 1.0)
        scale = _eye(4, b, dev)
        scale[:, :3, :3] *= contrast[:, None, None]
        mat = scale @ mat
        flip = _where(self._draw(b, p, dev), torch.randint(0, 2, (b,), device=dev).float(), 0.0)
        luma = _eye(4, b, dev)
        luma[:, :3, :3] -= 2 * vv * flip[:, None, None]          # Householder reflection along the luma axis
        mat = luma @ mat
        theta = _where(self._draw(b, p, dev), (torch.rand(b, device=dev) * 2 - 1) * math.pi, 0.0)
        mat = _rotation_about(v, theta) @ mat
        sat = _where(self._draw(b, p, dev), torch.exp2(torch.randn(b, device=dev)), 1.0)
        saturate = _eye(4, b, dev)
        saturate[:, :3, :3] = vv + (torch.eye(3, device=dev) - vv) * sat[:, None, None]
        mat = saturate @ mat
        flat = x.reshape(b, c, -1)
        out = mat[:, :3, :3].to(x.dtype) @ flat + mat[:, :3, 3:].to(x.dtype)
        return out.reshape(x.shape)


def _rotation_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """4×4 rotations by ``theta`` [B] about the unit 3-vector ``axis`` (Rodrigues)."""
    b = theta.shape[0]
    x, y, z = axis
    k = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], device=theta.device)
    s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    r = torch.eye(3, device=theta.device) + s * k + (1 - c) * (k @ k)
    m = _eye(4, b, theta.device)
    m[:, :3, :3] = r
    return m


class AdaController:
    """StyleGAN2-ADA's heuristic: accumulate sign(D(real)) over ``interval`` D steps, then move p toward
    r_t = ``target``, by at most N / (``speed_kimg`` · 1000) for N images (p from 0 to 1 in ``speed_kimg``
    kimg at the fastest)."""

    def __init__(self, augment: AdaAugment, target: float = 0.6, interval: int = 4, speed_kimg: float = 500):
        self.augment, self.target, self.interval, self.speed_kimg = augment, target, interval, speed_kimg
        self.sign_sum, self.count, self.steps = 0.0, 0, 0
        self.last_rt: float | None = None

    def accumulate(self, sign_sum: torch.Tensor | float, count: int,
                   reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Add one D step's sum of sign(D(real)) over its ``count`` images (a device tensor: no host sync until
        the adjustment); every ``interval`` calls, sum over the ranks with ``reduce``, adjust p and return True."""
        self.sign_sum = self.sign_sum + sign_sum
        self.count += count
        self.steps += 1
        if self.steps < self.interval:
            return False
        device = self.sign_sum.device if torch.is_tensor(self.sign_sum) else None
        totals = torch.stack([torch.as_tensor(self.sign_sum, dtype=torch.float64, device=device).reshape(()),
                              torch.tensor(float(self.count), dtype=torch.float64, device=device)])
        if reduce is not None:
            totals = reduce(totals)
        sign_sum, count = totals.tolist()
        rt = sign_sum / max(count, 1.0)
        adjust = math.copysign(1.0, rt - self.target) * count / (self.speed_kimg * 1000)
        self.augment.p = min(1.0, max(0.0, self.augment.p + adjust))
        self.last_rt = rt
        self.sign_sum, self.count, self.steps = 0.0, 0, 0
        return True

    def state_dict(self) -> dict:
        return {"p": self.augment.p, "sign_sum": float(self.sign_sum), "count": self.count, "steps": self.steps,
                "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.augment.p = float(state["p"])
        self.sign_sum, self.count, self.steps = float(state["sign_sum"]), int(state["count"]), int(state["steps"])
        self.last_rt = state.get("last_rt")


DIFFAUGMENT_POLICY = "color,translation,cutout"


def _diff_colour(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _diff_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2).contiguous()


def _diff_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, device=x.device, dtype=x.dtype)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_DIFF_OPS = {"color": _diff_colour, "translation": _diff_translation, "cutout": _diff_cutout}


def parse_policy(policy: str) -> list[str]:
    """The DiffAugment policy's operation names, checked (``color``, ``translation``, ``cutout``)."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [n for n in names if n not in _DIFF_OPS]
    if unknown:
        raise ValueError(f"unknown DiffAugment operation(s) {unknown}; choose from {sorted(_DIFF_OPS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = DIFFAUGMENT_POLICY) -> torch.Tensor:
    """DiffAugment: every operation of ``policy`` on every image (differentiable; zero padding)."""
    for name in parse_policy(policy):
        x = _DIFF_OPS[name](x)
    return x


class DiffAugment(nn.Module):
    """``diff_augment`` as a module."""

    def __init__(self, policy: str = DIFFAUGMENT_POLICY):
        super().__init__()
        self.policy = ",".join(parse_policy(policy))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.policy)
