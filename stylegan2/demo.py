"""The offline demo generator: a small StyleGAN2 whose weights are made deterministically from a seed.

It shows the mechanics of render2style on any machine with no downloads; its images are not photoreal.
Switch to real weights with ``--stylegan_weights stylegan2-ffhq-config-f.pt``.
"""
from __future__ import annotations

import logging

import torch

from render2style.stylegan2.model import Generator

log = logging.getLogger(__name__)

#: 64x64 output (n_latent 10), full 512-d W space, 8 mapping layers, at most 32 feature maps per layer.
DEMO_CONFIG = dict(size=64, style_dim=512, n_mlp=8, channel_multiplier=1, lr_mlp=0.01, channel_max=32)
#: Target standard deviation of demo images: random weights give values far outside [-1, 1].
DEMO_IMAGE_STD = 0.5


def demo_generator(seed: int = 0, device: str | torch.device = "cpu") -> Generator:
    """The seeded demo generator (same weights on every machine for a seed), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(**DEMO_CONFIG)
        _rescale_rgb(G, torch.randn(64, G.style_dim))
    log.info("DEMO generator (seed %d): %dx%d, random weights, not photoreal", seed, G.size, G.size)
    return G.to(device).eval()


@torch.no_grad()
def _rescale_rgb(G: Generator, z: torch.Tensor) -> None:
    """Scale every ToRGB weight so images have std DEMO_IMAGE_STD (the image is linear in these weights)."""
    std = G.synthesis(G.mapping(z).unsqueeze(1).repeat(1, G.n_latent, 1)).std()
    for m in [G.to_rgb1, *G.to_rgbs]:
        m.conv.weight.mul_(DEMO_IMAGE_STD / std)
