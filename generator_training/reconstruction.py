"""Reconstruction pre-training of a StyleGAN2 generator: a VAE whose decoder is the generator.

Adversarial training from scratch needs about 10⁶ images to make faces; on a few CPU cores that is days. A
variational auto-encoder learns the coarse structure of a face dataset in a few epochs instead, and when its
decoder *is* the StyleGAN2 generator (mapping network and synthesis network, z ~ N(0, I) as the prior) the
result is an ordinary generator: random z give faces, the truncation trick works on its W, and every tool loads
it. The samples are soft (a VAE's are); a short adversarial phase (``train_generator.py --ckpt``) sharpens them.

Loss per image: ‖x − G(z)‖² / (2σ²) summed over pixels (a Gaussian likelihood with fixed σ, ``recon_sigma``)
plus ``kl_weight`` · KL(q(z|x) ‖ N(0, I)), z = μ + σ_q·ε (reparameterisation). Photos are x-flipped at random.
The checkpoint has the rosinality layout (``g``, ``g_ema``, ``latent_avg``) plus ``vae_encoder`` and the
resume state; there is no ``d``: the adversarial phase starts a fresh discriminator.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from render2style.generator_training.ema import ema_beta, update_ema
from render2style.generator_training.reconstruction_config import ReconstructionConfig
from render2style.stylegan2.model import Generator
from render2style.training.checkpointing import rng_state, set_rng_state
from render2style.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


class ConvEncoder(nn.Module):
    """Image [B, 3, S, S] in [-1, 1] -> (μ, log σ²) of q(z|x), each [B, z_dim]: stride-2 convolutions to 4²."""

    def __init__(self, size: int, z_dim: int, channels: int = 32):
        super().__init__()
        layers, c_in, res = [], 3, size
        while res > 4:
            c_out = min(channels * (size // res) * 2, 512)
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, res = c_out, res // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * 16, 2 * z_dim)
        nn.init.zeros_(self.head.weight)  # start at the prior: μ = 0, log σ² = 0
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)


def decode(G: Generator, z: torch.Tensor) -> torch.Tensor:
    """G(z) with random noise: the mapping network, the same W on every layer, the synthesis network."""
    w = G.mapping(z)
    return G.synthesis(w.unsqueeze(1).repeat(1, G.n_latent, 1), noise_mode="random")


def vae_loss(E: ConvEncoder, G: Generator, x: torch.Tensor, cfg: ReconstructionConfig, kl_weight: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative ELBO per image (the loss, KL weighted by ``kl_weight``) and its parts, for images in [-1, 1]."""
    mu, logvar = E(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = (decode(G, z) - x).pow(2).flatten(1).sum(1) / (2 * cfg.recon_sigma ** 2)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    loss = (recon + kl_weight * kl).mean()
    mse = recon.detach().mean() * (2 * cfg.recon_sigma ** 2 / x[0].numel())
    return loss, {"loss": loss.detach(), "recon_mse": mse, "kl": kl.detach().mean()}


@torch.no_grad()
def reconstruction_mse(E: ConvEncoder, G: Generator, images: torch.Tensor, batch: int = 64) -> float:
    """Mean squared error of G(μ(x)) against x (posterior means, no sampling) over ``images`` (uint8)."""
    total = 0.0
    for start in range(0, len(images), batch):
        x = to_float(images[start:start + batch])
        total += float((decode(G, E(x)[0]) - x).pow(2).mean()) * len(x)
    return total / len(images)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


#: options a resumed pre-training may change (the length of the run and its logging)
RESUMABLE_CHANGES = ("kimg", "log_every", "snapshot_every")


def _read(path: str | Path) -> dict:
    """A pre-training checkpoint (``weights_only``), with errors naming the file."""
    from render2style.pretrained import load_torch_file
    ckpt = load_torch_file(path, "a pre-training checkpoint written by r2s-pretrain-generator")
    if not isinstance(ckpt, dict) or "recon_config" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint of r2s-pretrain-generator (no 'recon_config' entry)")
    return ckpt


def train_reconstruction(train: torch.Tensor, held_out: torch.Tensor, cfg: ReconstructionConfig,
                         out: str | Path) -> dict[str, float]:
    """Pre-train on ``train`` (uint8 [N, 3, S, S]); checkpoints to ``out`` (resumed when it exists).

    Returns the final figures: reconstruction MSE of the EMA generator on training and held-out photos.
    """
    out = Path(out)
    torch.manual_seed(cfg.seed)
    G, E = cfg.generator(), ConvEncoder(cfg.size, cfg.style_dim, cfg.encoder_channels)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt = torch.optim.Adam([{"params": G.parameters(), "lr": cfg.lr},
                            {"params": E.parameters(), "lr": cfg.encoder_lr}], betas=(0.9, 0.99))
    step, history = 0, []
    gen = torch.Generator().manual_seed(cfg.seed)
    if out.is_file():
        ckpt = _read(out)
        fixed = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
        if {k: ckpt["recon_config"].get(k) for k in fixed} != fixed:
            raise ValueError(f"{out}: written with another configuration {ckpt['recon_config']}; "
                             f"use a new output path or the same options (only {', '.join(RESUMABLE_CHANGES)} "
                             f"may change on resume)")
        G.load_state_dict(ckpt["g"])
        G_ema.load_state_dict(ckpt["g_ema"])
        E.load_state_dict(ckpt["vae_encoder"])
        opt.load_state_dict(ckpt["recon_optim"])
        step, history = ckpt["recon_step"], ckpt["recon_history"]
        set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["data_rng"])
        log.info("resumed %s at step %d", out, step)
    total_steps = math.ceil(cfg.kimg * 1000 / cfg.batch)
    beta = ema_beta(cfg.batch, cfg.ema_kimg, 0) if cfg.ema_kimg > 0 else 0.0
    t0, seen0 = time.perf_counter(), step
    while step < total_steps:
        idx = torch.randint(len(train), (cfg.batch,), generator=gen)
        x = to_float(train[idx])
        flip = torch.rand(cfg.batch, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        warmup = min(1.0, step * cfg.batch / (cfg.kl_warmup_kimg * 1000)) if cfg.kl_warmup_kimg > 0 else 1.0
        loss, parts = vae_loss(E, G, x, cfg, kl_weight=cfg.kl_weight * warmup)
        if not torch.isfinite(loss):  # the one host sync of a step: nothing non-finite reaches the weights
            raise FloatingPointError(f"non-finite loss at step {step}: { {k: float(v) for k, v in parts.items()} }")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(G_ema, G, beta)
        step += 1
        if step % cfg.log_every == 0 or step == total_steps:
            rate = (step - seen0) * cfg.batch / (time.perf_counter() - t0)
            parts = {k: float(v) for k, v in parts.items()}
            history.append({"step": step, "kimg": step * cfg.batch / 1000, **parts})
            log.info("step %d/%d  kimg %.1f  loss %.1f  recon_mse %.4f  kl %.1f  %.1f img/s", step, total_steps,
                     step * cfg.batch / 1000, parts["loss"], parts["recon_mse"], parts["kl"], rate)
        if step % cfg.snapshot_every == 0 or step == total_steps:
            _save(out, G, G_ema, E, opt, step, history, cfg, gen)
    figures = {"train_recon_mse": reconstruction_mse(E, G_ema, train[:len(held_out)]),
               "held_out_recon_mse": reconstruction_mse(E, G_ema, held_out)}
    log.info("reconstruction MSE (EMA generator, posterior means): train %.4f, held-out %.4f",
             figures["train_recon_mse"], figures["held_out_recon_mse"])
    return figures


def _save(out: Path, G: Generator, G_ema: Generator, E: ConvEncoder, opt: torch.optim.Optimizer, step: int,
          history: list[dict], cfg: ReconstructionConfig, gen: torch.Generator) -> None:
    latent_avg = G_ema.mean_latent(4096, seed=cfg.seed)
    atomic_torch_save({"g": G.state_dict(), "g_ema": G_ema.state_dict(), "latent_avg": latent_avg,
                       "vae_encoder": E.state_dict(), "recon_optim": opt.state_dict(), "recon_step": step,
                       "recon_history": history, "recon_config": asdict(cfg), "rng": rng_state(),
                       "data_rng": gen.get_state()}, out)


def split_indices(n: int, held_out_every: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of ``n`` sorted items: every ``held_out_every``-th is held out."""
    idx = np.arange(n)
    held = idx % held_out_every == held_out_every - 1
    return idx[~held], idx[held]


@torch.no_grad()
def posterior_codes(E: ConvEncoder, G: Generator, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """W = mapping(μ(x)) for every image (uint8 [N, 3, S, S]): the codes the decoder was trained on."""
    return torch.cat([G.mapping(E(to_float(images[s:s + batch]))[0]) for s in range(0, len(images), batch)])


def gaussian_fit(codes: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and symmetric square root of the covariance [D, D] of ``codes`` [N, D] (float64)."""
    codes = codes.double()
    mean = codes.mean(0)
    cov = torch.cov(codes.T) + eps * torch.eye(codes.shape[1], dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(cov)
    return mean, (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def w_frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of W codes (how far the mapping's W is from b)."""
    from render2style.evaluation.generator_quality import frechet_distance
    return frechet_distance(a.double().numpy(), b.double().numpy())


@torch.no_grad()
def install_gaussian_sampler(G: Generator, codes: torch.Tensor, *, offset: float = 8.0,
                             seed: int = 0) -> dict[str, float]:
    """Make z ~ N(0, I) land on the Gaussian N(m, Σ) fitted to ``codes`` (the posterior codes), exactly.

    A VAE's aggregate posterior is not its prior (here the posterior means lie far outside the shell the mapping
    network's pixel norm puts z on), so prior samples land where the decoder never trained; ex-post density
    estimation, as in regularised auto-encoders, fixes the sampler. It is built in closed form, in two changes
    that keep every image of a code the same:

    - the mapping network becomes W' = c·1 + pixel_norm(z) (c = ``offset``): the first layer adds c, every
      layer passes its input on, and with every pre-activation positive the leaky ReLUs (gain √2, set against
      weights 1/√2) are linear;
    - W' is an affine re-coordinatisation of W, W = m + Σ^½ (W' − c·1), folded into the affine style layer of
      every modulated convolution (A' = A Σ^½, b' = b + A (m − c Σ^½ 1)).

    pixel_norm(z) has identity covariance in 512-d up to its radius (√d, for a radius spread of ~3 %), so the
    images of random z are the decoder's images of N(m, Σ). Returns the Fréchet distance of W to ``codes``
    before and after (in the original coordinates), on as many samples as there are codes.
    """
    gen = torch.Generator().manual_seed(seed)
    probe = torch.randn(len(codes), G.style_dim, generator=gen)
    before = w_frechet(G.mapping(probe), codes)
    mean, root = (t.float() for t in gaussian_fit(codes))
    eye = torch.eye(G.style_dim)
    for k, layer in enumerate(G.style[1:]):
        layer.weight.copy_(eye / math.sqrt(2) / layer.scale)
        layer.bias.fill_(offset / math.sqrt(2) / layer.lr_mul if k == 0 else 0.0)
    shift = mean - root @ torch.full((G.style_dim,), offset)
    for module in G.modules():
        if hasattr(module, "modulation"):
            lin = module.modulation
            A, b = lin.weight * lin.scale, lin.bias * lin.lr_mul
            lin.weight.copy_(A @ root / lin.scale)
            lin.bias.copy_((b + A @ shift) / lin.lr_mul)
    w_prime = G.mapping(probe)
    if (w_prime <= 0).any():
        raise ValueError(f"offset {offset} too small: a pre-activation is negative")
    after = w_frechet(mean + (w_prime - offset) @ root, codes)
    log.info("Gaussian sampler: W Fréchet distance to the posterior codes %.2f -> %.2f", before, after)
    return {"w_fd_before": before, "w_fd_after": after}


def export_sampler(ckpt_path: str | Path, train: torch.Tensor, out: str | Path, *, n_codes: int = 5000,
                   seed: int = 0) -> dict[str, float]:
    """The pre-trained generator as a sampler: the EMA generator with :func:`install_gaussian_sampler` fitted to
    the posterior codes of ``n_codes`` training photos, written to ``out`` as ``g`` = ``g_ema`` (rosinality
    layout, plus ``latent_avg``; no ``d``) for ``train_generator.py --ckpt`` and every loader."""
    ckpt = _read(ckpt_path)
    cfg = ReconstructionConfig(**ckpt["recon_config"])
    G, E = cfg.generator(), ConvEncoder(cfg.size, cfg.style_dim, cfg.encoder_channels)
    G.load_state_dict(ckpt["g_ema"])
    E.load_state_dict(ckpt["vae_encoder"])
    G.eval().requires_grad_(False)
    E.eval().requires_grad_(False)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_codes]
    figures = install_gaussian_sampler(G, posterior_codes(E, G, train[pick]), seed=seed)
    state = G.state_dict()
    atomic_torch_save({"g": state, "g_ema": state, "latent_avg": G.mean_latent(4096, seed=seed),
                       "pretrain": {"config": asdict(cfg), "step": ckpt["recon_step"], **figures}}, out)
    return figures
