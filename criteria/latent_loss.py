"""Latent loss of amortized training: MSE between the predicted W+ and the teacher's target W+."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LatentLoss(nn.Module):
    """Per sample, the MSE over the 512 channels of each layer, averaged over layers with
    ``per_layer_weights`` (uniform by default); then the mean over the samples marked ``valid``.

    Samples without a valid target (e.g. flipped renders without flipped targets) contribute nothing,
    whatever their target holds (NaN included); when no sample is valid the loss is a zero that is still
    connected to the graph (zero gradient), so every rank of a distributed run does the same backward.
    """

    def __init__(self, per_layer_weights: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        weights = None if per_layer_weights is None else torch.as_tensor(per_layer_weights, dtype=torch.float32)
        if weights is not None and (weights.dim() != 1 or (weights < 0).any() or weights.sum() <= 0):
            raise ValueError(f"per_layer_weights must be non-negative with a positive sum, got {per_layer_weights}")
        self.register_buffer("per_layer_weights", weights, persistent=False)

    def sums(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the per-sample losses of the valid samples, their number): the loss before the mean,
        so that a distributed run can divide by the valid samples of the global batch."""
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(f"pred and target must both be [B, n_latent, 512], got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        if valid is None:
            valid = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
        valid = valid.to(device=pred.device, dtype=torch.bool)
        diff = torch.where(valid[:, None, None], pred - target.to(pred.dtype), torch.zeros((), dtype=pred.dtype,
                                                                                          device=pred.device))
        per_layer = diff.pow(2).mean(dim=2)  # [B, n_latent]
        w = self.per_layer_weights
        if w is None:
            per_sample = per_layer.mean(dim=1)
        else:
            if w.numel() != per_layer.shape[1]:
                raise ValueError(f"{w.numel()} per-layer weights for {per_layer.shape[1]} layers")
            w = w.to(per_layer)
            per_sample = (per_layer * w).sum(dim=1) / w.sum()
        return per_sample.sum(), valid.sum().to(per_sample.dtype)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """pred, target: [B, n_latent, 512]; valid: [B] bool (all valid when None). Returns a scalar."""
        total, count = self.sums(pred, target, valid)
        return total / count.clamp_min(1)
