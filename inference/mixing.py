"""Style mixing for multimodal outputs (pSp section 4.3): K photoreal variants of one input.

Each variant replaces (or alpha-blends) the *masked* layers of the input's W+ code with the W of a
random z passed through the mapping network and truncated toward the mean latent. The unmasked
layers keep the input's code exactly, so pose and shape (coarse layers) stay while colour and
texture (fine layers) vary.

Layer indices are **0-based** here and on the command line. pSp's paper speaks of "layers 8-18"
(1-based); its code and README use ``--latent_mask=8,...,17`` (0-based) for the 18 layers of a
1024² generator. Our default mask scales that choice to any generator: the first mixed layer is
``ceil(8 * n_latent / 18)`` and every later layer is mixed (18 -> 8..17, 14 -> 7..13, 10 -> 5..9).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from render2style.stylegan2.model import truncate


def default_latent_mask(n_latent: int) -> list[int]:
    """pSp's fine layers 8..17 of 18, scaled to ``n_latent`` (first mixed layer ceil(8·n/18))."""
    return list(range(math.ceil(8 * n_latent / 18), n_latent))


def parse_layers(text: str, option: str = "--latent_mask") -> list[int]:
    """'8,9,10' or '8-17' (0-based, inclusive ranges) -> sorted layer indices; ``ValueError`` naming
    ``option`` for anything else (words, negative indices, empty or reversed ranges such as 9-5)."""
    layers: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"{option} {text!r}: {part!r} is not a 0-based layer index or an inclusive range "
                             "like 8-17") from None
        if first > last:
            raise ValueError(f"{option} {text!r}: the range {part!r} is empty (write it low-high, e.g. {last}-{first})")
        layers.update(range(first, last + 1))
    if not layers:
        raise ValueError(f"{option} {text!r}: no layers given")
    return sorted(layers)


def parse_latent_mask(text: str | None, n_latent: int, option: str = "--latent_mask") -> list[int]:
    """:func:`parse_layers`, checked against the generator's ``n_latent`` layers; None/'' -> the default."""
    if not text:
        return default_latent_mask(n_latent)
    layers = parse_layers(text, option)
    bad = [i for i in layers if not 0 <= i < n_latent]
    if bad:
        raise ValueError(f"{option} {text!r}: layers {bad} outside 0..{n_latent - 1} "
                         f"(indices are 0-based; this generator has {n_latent} style layers)")
    return layers


@torch.no_grad()
def random_styles(G: torch.nn.Module, n: int, seed: int, truncation: float = 1.0,
                  mean_latent: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` W vectors [n, style_dim] from z ~ N(0, I) drawn with ``seed`` (CPU generator, so the same
    seed gives the same styles on every device), optionally truncated toward ``mean_latent``."""
    device = next(G.parameters()).device
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    w = G.style(z)
    if truncation != 1.0:
        if mean_latent is None:
            mean_latent = G.mean_latent(4096, seed=seed)
        w = truncate(w, mean_latent.reshape(-1, G.style_dim).mean(0, keepdim=True).to(device), truncation)
    return w


@torch.no_grad()
def mix_styles(codes: torch.Tensor, G: torch.nn.Module, n_variants: int,
               latent_mask: Sequence[int] | None = None, alpha: float | None = None,
               truncation: float = 1.0, seed: int = 0,
               mean_latent: torch.Tensor | None = None) -> torch.Tensor:
    """Style-mixed variants of W+ codes.

    Args:
        codes: [B, n_latent, style_dim] input codes.
        G: the generator whose mapping network draws the random styles.
        n_variants: K variants per input.
        latent_mask: 0-based layers to mix (default: :func:`default_latent_mask`).
        alpha: weight of the random style in the masked layers (pSp's ``mix_alpha``; None = 1, replace).
        truncation: psi toward ``mean_latent`` (the checkpoint's ``latent_avg`` is a good choice;
            when None it is estimated from 4096 samples with ``seed``).
        seed: variant k uses the k-th style drawn with this seed, the same for every input, so the
            result does not depend on batching.

    Returns:
        [B, K, n_latent, style_dim]; unmasked layers are exactly ``codes``.
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must be [B, n_latent, style_dim], got {tuple(codes.shape)}")
    n_latent = codes.shape[1]
    mask = list(latent_mask) if latent_mask is not None else default_latent_mask(n_latent)
    a = 1.0 if alpha is None else float(alpha)
    w = random_styles(G, n_variants, seed, truncation, mean_latent).to(codes)     # [K, D]
    out = codes.unsqueeze(1).repeat(1, n_variants, 1, 1)                             # [B, K, n, D]
    if mask:
        idx = torch.as_tensor(mask, device=codes.device)
        mixed = a * w[None, :, None, :] + (1.0 - a) * out[:, :, idx]
        out[:, :, idx] = mixed
    return out
