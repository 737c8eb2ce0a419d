"""Options of the reconstruction pre-training (torch-free, so that ``--help`` loads no torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from render2style.stylegan2.model import Generator


@dataclass
class ReconstructionConfig:
    """Architecture and optimisation of the pre-training (defaults: the shipped demo face generator's run).

    ``recon_sigma``: σ of the Gaussian likelihood (images in [-1, 1]); larger σ weighs the KL term more.
    ``kl_warmup_kimg``: the KL weight ramps up linearly over this many thousand images. ``ema_kimg``: half-life
    of the generator's EMA. ``log_every`` / ``snapshot_every``: in optimisation steps.
    """

    size: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: float = 1
    channel_max: int = 64
    encoder_channels: int = 32
    batch: int = 32
    lr: float = 2e-3
    encoder_lr: float = 5e-4
    kl_warmup_kimg: float = 2.0
    recon_sigma: float = 0.25
    kl_weight: float = 1.0
    ema_kimg: float = 2.0
    kimg: float = 60.0
    log_every: int = 25
    snapshot_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch", "lr", "encoder_lr", "recon_sigma", "kimg", "log_every", "snapshot_every",
                     "encoder_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReconstructionConfig.{name} must be > 0, got {getattr(self, name)}")
        if min(self.kl_weight, self.ema_kimg, self.kl_warmup_kimg) < 0:
            raise ValueError("ReconstructionConfig.kl_weight, ema_kimg and kl_warmup_kimg must be >= 0")

    def generator(self) -> Generator:
        from render2style.stylegan2.model import Generator
        return Generator(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                         channel_multiplier=self.channel_multiplier, channel_max=self.channel_max)
