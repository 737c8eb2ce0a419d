"""pSp's w-norm regulariser: keeps predicted codes close to the average latent."""
from __future__ import annotations

import torch
from torch import nn


class WNormLoss(nn.Module):
    """Mean over the batch of ‖codes − latent_avg‖₂ (Frobenius norm over [n_latent, 512]); with
    ``start_from_latent_avg=False`` the norm of the codes themselves."""

    def __init__(self, start_from_latent_avg: bool = True):
        super().__init__()
        self.start_from_latent_avg = start_from_latent_avg

    def forward(self, codes: torch.Tensor, latent_avg: torch.Tensor | None = None) -> torch.Tensor:
        """codes: [B, n_latent, 512]; latent_avg: [512], [1, 512] or [n_latent, 512]. Returns a scalar."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, n_latent, style_dim], got {tuple(codes.shape)}")
        if self.start_from_latent_avg:
            if latent_avg is None:
                raise ValueError("WNormLoss(start_from_latent_avg=True) needs latent_avg")
            codes = codes - latent_avg.to(codes.dtype)
        return codes.norm(2, dim=(1, 2)).mean()
