"""StyleGAN2's objective: the non-saturating logistic loss, lazy R1 and path-length regularization.

Formulas as in Karras et al. 2020 (StyleGAN2, §3.1 and appendix B) and stylegan2-ada-pytorch's
``training/loss.py``; each returns the unweighted term, the caller weights it (``lazy_weight``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss: mean softplus(D(fake)) + mean softplus(−D(real))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: mean softplus(−D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖∇ₓ D(x)‖² at the real images (``real_images`` must require grad); the graph is
    kept so the penalty can be back-propagated into D."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def path_lengths(images: torch.Tensor, w_plus: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ‖J_wᵀ y‖₂ with y ~ N(0, I)/√(H·W): ``sqrt(mean over layers of Σ_dims grad²)`` ([B]).

    ``w_plus`` [B, n_latent, D] must be in the graph of ``images``; ``noise`` (default: drawn here) is the
    random image-space direction y.
    """
    if noise is None:
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images.float() * noise).sum(), w_plus, create_graph=True)
    return grad.float().pow(2).sum(2).mean(1).sqrt()


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of (length − a)², the updated running mean a ← a + decay·(mean length − a)); a is detached."""
    new_mean = pl_mean + decay * (lengths.detach().mean() - pl_mean)
    return (lengths - new_mean).pow(2).mean(), new_mean


def lazy_weight(weight: float, interval: int) -> float:
    """A regularizer computed every ``interval`` minibatches is scaled by ``interval`` (lazy regularization)."""
    return weight * interval


def lazy_adam_hyperparameters(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple]:
    """Adam's lr and betas corrected for lazy regularization: c = k / (k + 1), lr·c, betas**c."""
    c = interval / (interval + 1) if interval > 0 else 1.0
    return lr * c, (betas[0] ** c, betas[1] ** c)
