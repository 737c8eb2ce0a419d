"""Plain photos (self-reconstruction, real-image checks): every image file in a folder, mask = ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from render2style.datasets.registry import register_dataset
from render2style.datasets.renders import Render, RenderSource, list_files, read_rgb


@register_dataset("images")
class ImageFolder(RenderSource):
    """Every image directly in the folder (any mode; 16-bit and grayscale converted); no hair, no landmarks."""

    def _list(self) -> list[Path]:
        return list(list_files(self.root).values())

    def load(self, index: int) -> Render:
        path = self.paths[index]
        rgb = read_rgb(path)
        return Render(self.ids[index], rgb, np.ones(rgb.shape[:2], np.float32), None, None, str(path))
