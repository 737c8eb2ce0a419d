"""Is a generator making faces? Two measured criteria for unconditional samples.

- **Face rate**: the fraction of images in which dlib's HOG frontal face detector finds a face after the image is
  resized to ``detect_size``² (256: dlib's detector needs faces of about 80 px). Real aligned photos score near
  1, random weights 0.
- **FD-VGG16**: the Fréchet distance between Gaussians fitted to VGG-16 features (ImageNet weights; each
  conv5_3 map average-pooled to 512-d) of two image sets. It is FID's formula on another network, so its values
  are not comparable with Inception FID; lower is closer.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from render2style.stylegan2.model import Generator, truncate

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@torch.no_grad()
def generator_samples(G: Generator, n: int, *, truncation: float = 1.0, seed: int = 0, batch: int = 64,
                      w_avg: torch.Tensor | None = None) -> Iterator[np.ndarray]:
    """``n`` samples of ``G`` (stored noise) as uint8 [B, 3, H, W] batches, z drawn from ``seed``.

    With ``truncation`` < 1, W is moved toward ``w_avg`` (``G.mean_latent`` over 4096 z when None).
    """
    device = next(G.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if truncation != 1.0 and w_avg is None:
        w_avg = G.mean_latent(4096, seed=seed + 1)
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), G.style_dim, generator=gen).to(device)
        w = G.mapping(z)
        if truncation != 1.0:
            w = truncate(w, w_avg.to(device), truncation)
        img = G.synthesis(w.unsqueeze(1).repeat(1, G.n_latent, 1), noise_mode="const")
        yield img.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu().numpy()


def face_rate(images: np.ndarray, *, detect_size: int = 256, detector=None) -> float:
    """Fraction of uint8 images [N, 3, H, W] in which dlib's frontal detector finds at least one face."""
    if detector is None:
        import dlib
        detector = dlib.get_frontal_face_detector()
    found = 0
    for img in images:
        rgb = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
        rgb = np.asarray(rgb.resize((detect_size, detect_size), Image.Resampling.BICUBIC))
        found += len(detector(rgb, 0)) > 0
    return found / len(images)


class VGGFeatures:
    """512-d average-pooled conv5_3 (after ReLU) features of ImageNet VGG-16 for uint8 images."""

    def __init__(self, weights: str | os.PathLike | None, device: str | torch.device = "cpu"):
        from render2style.criteria.lpips_loss import load_vgg16_features
        self.net = load_vgg16_features(weights, device)[:30]  # up to relu5_3, before the last max-pool
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[start:start + batch])).to(self.device).float().div(255)
            out.append(self.net((x - self.mean) / self.std).mean(dim=(2, 3)).double().cpu().numpy())
        return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½) between Gaussians fitted to feature rows of ``a`` and ``b``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # singular product: regularise as FID implementations do
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
