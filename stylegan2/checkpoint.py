"""Loading StyleGAN2 weights in the rosinality layout (``stylegan2-ffhq-config-f.pt``, what pSp uses).

The file is a dict with ``g_ema`` (state dict) and often ``latent_avg``, ``g``, ``d``; only ``g_ema`` is needed.
The architecture (size, style_dim, mapping depth, channels) is read from the tensor shapes, so any
configuration loads; the keys must then match exactly (strict).
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import torch

from render2style.pretrained import load_torch_file, resolve_weights
from render2style.stylegan2.model import Generator, generator_channels

log = logging.getLogger(__name__)

WEIGHTS_HELP = (
    "StyleGAN2 FFHQ config-f weights in the rosinality layout: 'stylegan2-ffhq-config-f.pt' (about 364 MB), "
    "linked from the pSp README (github.com/eladrich/pixel2style2pixel, 'Pretrained Models') or converted from "
    "NVIDIA's official 'stylegan2-ffhq-config-f.pkl' / stylegan2-ada-pytorch '.pkl' with r2s-convert-weights"
)


def read_checkpoint(path: str | os.PathLike, expected: str = WEIGHTS_HELP) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` (``render2style.pretrained.load_torch_file``); clear errors
    for missing, truncated, corrupt or code-carrying files.

    ``expected`` describes the file (what it is, where to get it) for the missing-file message. ``path``
    may be a registry name (``ffhq-1024``, ``psp_ffhq_encode``; :func:`render2style.pretrained.resolve_weights`).
    """
    path = resolve_weights(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found. Expected {expected}.")
    # Training checkpoints of the reference code also pickle an argparse.Namespace: allow only that class.
    ckpt = load_torch_file(path, expected, allowed=(argparse.Namespace,))
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def infer_config(state: dict[str, torch.Tensor], source: str = "<state dict>") -> dict[str, Any]:
    """Generator constructor arguments implied by a rosinality-layout ``g_ema`` state dict."""
    try:
        style_dim = state["style.1.weight"].shape[1]
        n_mlp = len({k.split(".")[1] for k in state if k.startswith("style.") and k.endswith(".weight")})
        n_rgbs = len({k.split(".")[1] for k in state if k.startswith("to_rgbs.")})
        size = 2 ** (n_rgbs + 2)
        chans = {4: state["conv1.conv.weight"].shape[1]}
        for i in range(n_rgbs):
            chans[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    except KeyError as e:
        raise ValueError(f"{source}: not a StyleGAN2 generator in the rosinality layout (missing key {e})") from e
    channel_max = chans[4]
    # Recover the channel multiplier from the first resolution above 32 (config-f: 512 at 64² -> cm = 2).
    cm = chans[64] / 256 if 64 in chans else 2
    cfg = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm, channel_max=channel_max)
    expected = generator_channels(cm, channel_max)
    if any(expected[r] != c for r, c in chans.items()):
        raise ValueError(f"{source}: channel layout {chans} is not a StyleGAN2 config this generator supports")
    return cfg


def load_generator(path: str | os.PathLike, size: int | None = None, device: str | torch.device = "cpu",
                   key: str = "g_ema") -> tuple[Generator, torch.Tensor | None]:
    """Build a Generator from a rosinality checkpoint with strict keys.

    Returns (generator in eval mode, ``latent_avg`` [1, style_dim] or None when the file has none).
    ``size`` checks the resolution the caller's config expects.
    """
    ckpt = read_checkpoint(path)
    if key not in ckpt:
        raise ValueError(f"{path}: no '{key}' entry (keys: {sorted(ckpt)[:8]}). Expected {WEIGHTS_HELP}.")
    state = ckpt[key]
    cfg = infer_config(state, str(path))
    if size is not None and cfg["size"] != size:
        raise ValueError(f"{path}: the checkpoint is a {cfg['size']}x{cfg['size']} generator "
                         f"but the configuration asks for {size}x{size} (set --output_size {cfg['size']})")
    G = Generator(**cfg)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: state dict does not match the StyleGAN2 layout: {e}") from e
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(-1, cfg["style_dim"])[:1].float().to(device)
    log.info("loaded StyleGAN2 %dx%d from %s", cfg["size"], cfg["size"], path)
    return G.to(device).eval(), latent_avg
