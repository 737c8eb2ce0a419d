"""Losses, and the pretrained perceptual / identity networks they use, loaded from local files.

One loss per module; each returns a scalar tensor (``IDLoss`` returns ``(loss, logs)`` like pSp):

- ``l2.masked_mse``: pixel MSE, optionally weighted by a face mask.
- ``lpips_loss``: ``build_lpips``, ``LPIPSLoss``, ``load_backbone_state_dict``, ``load_vgg16_features``.
- ``id_loss``: ``IDLoss``, ``IdentityEncoder`` (IR-SE50 / insightface ONNX / facenet backbones).
- ``w_norm.WNormLoss``, ``latent_loss.LatentLoss``; ``ssim``: ``ssim``, ``ms_ssim``.
Weight files (``MissingWeightsError``, ``KNOWN_WEIGHTS``, safe loaders) live in ``render2style.pretrained``.
Names are imported on first use, so importing one loss stays light.
"""
from __future__ import annotations

from render2style.utils.lazy import lazy_exports

_EXPORTS = {
    "masked_mse": "l2",
    "build_lpips": "lpips_loss", "LPIPSLoss": "lpips_loss", "load_backbone_state_dict": "lpips_loss",
    "load_vgg16_features": "lpips_loss",
    "IDLoss": "id_loss", "IdentityEncoder": "id_loss",
    "WNormLoss": "w_norm", "LatentLoss": "latent_loss",
    "ssim": "ssim", "ms_ssim": "ssim",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
