"""The amortized training objective (docs: DESIGN.md, 'Amortized training').

loss = λ_l2·L2(ŷ, y*) + λ_lpips·LPIPS(ŷ, y*) + λ_id·ID(ŷ, y*) + λ_latent·‖E(x) − w*‖² + λ_wnorm·w-norm

ŷ = G(E(x)) resized to the target's resolution (average pooling from 1024 to 256, as pSp), y* =
``batch['target']`` — the teacher image G(w*) when targets exist, the input render otherwise (plain
pSp self-reconstruction). Image terms are optionally weighted by the face mask; the latent term only
counts samples with ``has_latent`` (a flipped render without flipped targets has none).
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

import torch
from torch import nn

from render2style.criteria.l2 import masked_se
from render2style.criteria.resize import resize_image

log = logging.getLogger(__name__)

#: (sum of a device tensor over the ranks, world size)
RankSum = tuple[Callable[[torch.Tensor], torch.Tensor], int]


def _id_weights(opts: argparse.Namespace) -> str | None:
    if opts.id_weights:
        return opts.id_weights
    return opts.ir_se50_weights if opts.id_backbone == "ir_se50" else None


class EncoderObjective(nn.Module):
    """Builds the loss terms whose λ is > 0; missing pretrained weights raise ``MissingWeightsError``
    from the criteria (only ``--no_perceptual`` or the demo drop LPIPS/ID, see ``train_encoder``)."""

    def __init__(self, opts: argparse.Namespace, device: torch.device | str = "cpu"):
        super().__init__()
        self.lambdas = {"l2": opts.l2_lambda, "lpips": opts.lpips_lambda, "id": opts.id_lambda,
                        "latent": opts.latent_lambda, "w_norm": opts.w_norm_lambda}
        if not any(lam > 0 for lam in self.lambdas.values()):
            raise ValueError(f"every loss weight is 0 ({self.lambdas}): nothing to train")
        self.mask_losses = bool(opts.mask_losses)
        self.lpips = self.id_loss = self.w_norm = self.latent = None
        if opts.lpips_lambda > 0:
            from render2style.criteria.lpips_loss import LPIPSLoss
            self.lpips = LPIPSLoss(opts.lpips_type, opts.lpips_weights, device=device)
        if opts.id_lambda > 0:
            from render2style.criteria.id_loss import IDLoss
            self.id_loss = IDLoss(opts.id_backbone, _id_weights(opts), device=device)
        if opts.w_norm_lambda > 0:
            from render2style.criteria.w_norm import WNormLoss
            self.w_norm = WNormLoss(start_from_latent_avg=opts.start_from_latent_avg)
        if opts.latent_lambda > 0:
            from render2style.criteria.latent_loss import LatentLoss
            self.latent = LatentLoss(opts.latent_layer_weights)
        self.names = ["loss"] + [f"loss_{k}" for k, lam in self.lambdas.items() if lam > 0]
        if self.id_loss is not None:
            self.names.append("id_improve")

    def terms(self, y_hat: torch.Tensor, latents: torch.Tensor, batch: dict[str, Any],
              latent_avg: torch.Tensor, ranks: RankSum | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss (scalar tensor) and the detached values of ``self.names`` as one float tensor on the
        device: no host sync, so the trainer fetches them together with its gradient check.

        ``ranks`` (training under DDP): ``(sum over ranks, world size)``. The masked L2 and the latent
        term are then normalised by the mask weight / valid samples of the global batch, so that DDP's
        gradient average equals one process's gradient on the global batch.
        """
        def mean(total: torch.Tensor, weight: torch.Tensor, floor: float) -> torch.Tensor:
            if ranks is None:
                return total / weight.clamp_min(floor)
            all_ranks, world = ranks
            return total * world / all_ranks(weight.detach()).clamp_min(floor)

        target = batch["target"].to(y_hat.device, y_hat.dtype)
        y_hat = resize_image(y_hat, target.shape[-1])
        mask = batch["mask"].to(y_hat.device) if self.mask_losses else None
        terms: dict[str, torch.Tensor] = {}
        if self.lambdas["l2"] > 0:
            terms["l2"] = mean(*masked_se(y_hat, target, mask), 1e-8)
        if self.lpips is not None:
            terms["lpips"] = self.lpips(y_hat, target, mask)
        extra = []
        if self.id_loss is not None:
            x = batch["input"][:, :3].to(y_hat.device, y_hat.dtype)
            terms["id"], id_logs = self.id_loss(y_hat, target, x)
            extra.append(id_logs["id_improve"])
        if self.latent is not None:
            w_star = batch["latent"].to(latents.device, latents.dtype)
            valid = batch["has_latent"].to(latents.device).bool()
            terms["latent"] = mean(*self.latent.sums(latents, w_star, valid), 1.0)
        if self.w_norm is not None:
            terms["w_norm"] = self.w_norm(latents, latent_avg)
        loss = sum(self.lambdas[k] * v for k, v in terms.items())
        values = torch.stack([v.detach().float().reshape(()) for v in (loss, *terms.values(), *extra)])
        return loss, values

    def forward(self, y_hat: torch.Tensor, latents: torch.Tensor, batch: dict[str, Any],
                latent_avg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and the terms as floats (one device-to-host transfer); keys are ``self.names``."""
        loss, values = self.terms(y_hat, latents, batch, latent_avg)
        return loss, dict(zip(self.names, values.tolist()))
