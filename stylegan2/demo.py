"""The offline demo generators: a 64² face generator shipped with the package, and a seeded random one.

- :func:`demo_face_generator` loads ``weights/demo_faces64.pt`` (fp16 ``g_ema``, 5.8 MB): a 64² StyleGAN2
  trained with ``r2s-pretrain-generator`` on UTKFace's aligned photos (non-commercial research terms; the
  photos are not in the repository). ``weights/demo_faces64.json`` records its SHA-256, how it was made, its
  measured quality and a sample checksum. Its faces are soft (a VAE's), not photoreal.
- :func:`demo_generator` makes a small StyleGAN2 whose weights are drawn from a seed: the same on every machine,
  images of colour noise; the tests' generator.

The demo world uses the face generator (``--stylegan_weights demo``, or ``--demo_generator faces``); the
random one is ``demo-random`` (``--demo_generator random``). Switch to real weights with
``--stylegan_weights stylegan2-ffhq-config-f.pt``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from render2style.options.demo_names import DEMO_KINDS
from render2style.stylegan2.model import Generator

log = logging.getLogger(__name__)

#: 64x64 output (n_latent 10), full 512-d W space, 8 mapping layers, at most 32 feature maps per layer.
DEMO_CONFIG = dict(size=64, style_dim=512, n_mlp=8, channel_multiplier=1, lr_mlp=0.01, channel_max=32)
#: Target standard deviation of demo images: random weights give values far outside [-1, 1].
DEMO_IMAGE_STD = 0.5
#: The shipped demo face generator and its record (checksum, recipe, quality, sample checksum).
DEMO_FACES_WEIGHTS = Path(__file__).with_name("weights") / "demo_faces64.pt"
DEMO_FACES_RECORD = DEMO_FACES_WEIGHTS.with_suffix(".json")
#: The generator name recorded in targets' ``run.json`` and encoder checkpoints, by kind.
DEMO_GENERATOR_NAMES = {"faces": "demo-faces64", "random": "demo-random"}


def load_demo(kind: str, *, seed: int = 0, device: str | torch.device = "cpu"
              ) -> tuple[Generator, torch.Tensor | None, str]:
    """``(G, latent_avg [1, 512] or None, name)`` of a demo generator: 'faces' (shipped) or 'random' (seeded)."""
    if kind == "faces":
        return (*demo_face_generator(device), DEMO_GENERATOR_NAMES[kind])
    if kind == "random":
        return demo_generator(seed, device), None, DEMO_GENERATOR_NAMES[kind]
    raise ValueError(f"unknown demo generator {kind!r}: expected one of {DEMO_KINDS}")


def demo_face_generator(device: str | torch.device = "cpu") -> tuple[Generator, torch.Tensor]:
    """The shipped 64² demo face generator (fp32, eval mode) and its ``latent_avg`` [1, 512]."""
    from render2style.stylegan2.checkpoint import load_generator
    G, latent_avg = load_generator(DEMO_FACES_WEIGHTS, device=device)
    log.info("DEMO face generator %s: 64x64, trained on UTKFace (non-commercial research terms), not photoreal",
             DEMO_FACES_WEIGHTS.name)
    return G, latent_avg


def demo_faces_record() -> dict:
    """The JSON record next to the shipped weights."""
    return json.loads(DEMO_FACES_RECORD.read_text())


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
