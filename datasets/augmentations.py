"""albumentations pipelines for the encoder's input.

Only photometric changes: they alter how the render looks, not where anything is, so the teacher's
image and W+ code stay valid targets. The one geometric augmentation, the horizontal flip, is done by
``EncoderDataset`` itself because it must flip the input, the mask and the target together (and swap
in the flipped render's targets).
"""
from __future__ import annotations

import albumentations as A


def photometric_augmentations(p: float = 1.0) -> A.Compose:
    """Moderate brightness/contrast, hue/saturation, sensor noise and blur; ``p`` scales every probability."""
    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5 * p),
        A.HueSaturationValue(hue_shift_limit=6, sat_shift_limit=15, val_shift_limit=0, p=0.3 * p),
        A.GaussNoise(std_range=(0.01, 0.03), p=0.2 * p),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.1 * p),
    ])
