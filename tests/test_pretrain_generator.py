"""Reconstruction pre-training (a VAE whose decoder is the StyleGAN2 generator) and the refitted sampler.

Faults these tests were run against (each fails at least one test): KL sign/term dropped; the posterior sample
ignoring σ; recon term not divided by 2σ²; EMA not updated; resume not restoring the data order; the sampler's
mapping without its offset (negative pre-activations); the style layers not folded (images change) or folded
without the shift; the sampler file without ``g``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from render2style.generator_training.reconstruction import (
    ConvEncoder,
    ReconstructionConfig,
    export_sampler,
    gaussian_fit,
    install_gaussian_sampler,
    reconstruction_mse,
    split_indices,
    train_reconstruction,
    vae_loss,
)
from render2style.stylegan2 import load_generator

TINY = ReconstructionConfig(size=8, style_dim=16, n_mlp=2, channel_max=8, encoder_channels=4, batch=8,
                            lr=5e-3, encoder_lr=5e-3, kimg=0.8, kl_warmup_kimg=0.1, ema_kimg=0.05, log_every=10,
                            snapshot_every=50)


def _photos(n: int = 64, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Two-colour 'photos': a bright square on a dark ground, at random places (uint8 [n, 3, size, size])."""
    rng = np.random.default_rng(seed)
    img = np.full((n, 3, size, size), 30, np.uint8)
    for k in range(n):
        y, x = rng.integers(0, size // 2, 2)
        img[k, :, y:y + size // 2, x:x + size // 2] = rng.integers(150, 255, 3)[:, None, None]
    return torch.from_numpy(img)


def test_vae_loss_parts_match_hand_computation():
    torch.manual_seed(0)
    G, E = TINY.generator(), ConvEncoder(8, 16, 4)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        E.head.bias[:16] = 0.5      # μ = 0.5 in every dimension
        E.head.bias[16:] = math.log(0.25)  # σ² = 0.25
    _, parts = vae_loss(E, G, x, TINY, kl_weight=2.0)
    assert parts["kl"] == pytest.approx(0.5 * (0.25 + 0.25 - 1 - math.log(0.25)) * 16, rel=1e-5)
    assert vae_loss(E, G, x, TINY, kl_weight=2.0)[1]["recon_mse"] != parts["recon_mse"]  # z is sampled
    with torch.no_grad():
        E.head.bias[16:] = -12.0  # σ ≈ 0.0025: z ≈ μ, the reconstruction term is deterministic
        loss, parts = vae_loss(E, G, x, TINY, kl_weight=2.0)
        image = G.synthesis(G.mapping(torch.full((3, 16), 0.5)).unsqueeze(1).repeat(1, G.n_latent, 1))
    recon = (image - x).pow(2).flatten(1).sum(1).mean() / (2 * TINY.recon_sigma ** 2)
    kl = 0.5 * (0.25 + math.exp(-12) - 1 + 12) * 16
    assert float(loss) == pytest.approx(float(recon) + 2.0 * kl, rel=1e-3)
    assert parts["recon_mse"] == pytest.approx(float((image - x).pow(2).mean()), rel=1e-3)


def test_pretraining_reconstructs_held_out_photos_and_resumes_exactly(tmp_path):
    photos = _photos(80)
    train, held = photos[:64], photos[64:]
    torch.manual_seed(0)
    E0, G0 = ConvEncoder(8, 16, 4), TINY.generator()
    before = reconstruction_mse(E0, G0, held)
    figures = train_reconstruction(train, held, TINY, tmp_path / "full.pt")
    assert figures["held_out_recon_mse"] < 0.5 * before, (before, figures)
    full = torch.load(tmp_path / "full.pt", weights_only=True)

    short = replace(TINY, kimg=0.4)  # stop after 50 steps (a snapshot), then resume to the end
    train_reconstruction(train, held, short, tmp_path / "part.pt")
    train_reconstruction(train, held, TINY, tmp_path / "part.pt")  # a longer --kimg continues the run
    resumed = torch.load(tmp_path / "part.pt", weights_only=True)
    assert [h["loss"] for h in resumed["recon_history"]] == [h["loss"] for h in full["recon_history"]]
    for k, v in full["g_ema"].items():
        torch.testing.assert_close(resumed["g_ema"][k], v, rtol=0, atol=0)


def test_resume_refuses_another_configuration(tmp_path):
    photos = _photos(16)
    cfg = replace(TINY, kimg=0.016)
    train_reconstruction(photos, photos[:4], cfg, tmp_path / "p.pt")
    with pytest.raises(ValueError, match="another configuration"):
        train_reconstruction(photos, photos[:4], replace(cfg, lr=1e-3), tmp_path / "p.pt")
    torch.save({"g_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: not a checkpoint of r2s-pretrain-generator"):
        train_reconstruction(photos, photos[:4], cfg, tmp_path / "other.pt")


def test_gaussian_sampler_is_exact_and_keeps_every_image():
    torch.manual_seed(1)
    G = TINY.generator().eval()
    reference = copy.deepcopy(G)
    mean = torch.linspace(-0.3, 0.3, 16)
    mix = torch.randn(16, 16) * 0.1
    codes = mean + torch.randn(5000, 16) @ mix  # N(mean, mixᵀ mix)
    stats = install_gaussian_sampler(G, codes, offset=8.0)
    assert stats["w_fd_after"] < 0.02 < stats["w_fd_before"], stats
    want_mean, want_root = gaussian_fit(codes)
    with torch.no_grad():
        z = torch.randn(20000, 16)
        w_new = G.mapping(z).double()
        x = z.double() * math.sqrt(16) / z.double().norm(dim=1, keepdim=True)  # pixel norm, independently
        torch.testing.assert_close(w_new, 8.0 + x, atol=1e-4, rtol=0)  # the mapping is c·1 + pixel_norm(z)
        w_old = want_mean + (w_new - 8.0) @ want_root  # the same codes in the original coordinates
        cov = torch.cov(w_old.T)
        assert torch.linalg.matrix_norm(cov - want_root @ want_root) < 0.05 * torch.linalg.matrix_norm(cov)
        assert (w_old.mean(0) - want_mean).abs().max() < 0.03  # 20000 samples: standard error ≈ 0.003
        wp_new, wp_old = (w[:4, None].repeat(1, G.n_latent, 1).float() for w in (w_new, w_old))
        torch.testing.assert_close(G.synthesis(wp_new), reference.synthesis(wp_old), atol=1e-4, rtol=1e-4)


def test_export_sampler_writes_a_generator_every_loader_reads(tmp_path):
    photos = _photos(32)
    cfg = replace(TINY, kimg=0.08)
    train_reconstruction(photos, photos[:4], cfg, tmp_path / "p.pt")
    stats = export_sampler(tmp_path / "p.pt", photos, tmp_path / "s.pt", n_codes=32)
    assert stats["w_fd_after"] < stats["w_fd_before"]
    G, latent_avg = load_generator(tmp_path / "s.pt")
    assert G.size == 8 and latent_avg.shape == (1, 16)
    ckpt = torch.load(tmp_path / "s.pt", weights_only=True)
    assert "d" not in ckpt and ckpt["g"].keys() == ckpt["g_ema"].keys()


def test_split_holds_out_every_fortieth():
    train, held = split_indices(100)
    assert held.tolist() == [39, 79] and len(train) == 98 and not set(train) & set(held)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="recon_sigma"):
        ReconstructionConfig(recon_sigma=0)
