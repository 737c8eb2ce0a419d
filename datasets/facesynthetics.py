"""Microsoft Face Synthetics layout (Wood et al. 2021): ``NNNNNN.png``, ``NNNNNN_seg.png``, ``NNNNNN_ldmks.txt``.

The segmentation's classes give the face and hair masks (``datasets.masks``).
The landmark file has 70 rows "x y": iBUG's 68, then the two pupils (ignored here).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from render2style.datasets.masks import read_segmentation
from render2style.datasets.registry import register_dataset
from render2style.datasets.renders import Render, RenderSource, list_files, parse_landmarks, read_rgb

_FRAME = re.compile(r"^\d+$")


def read_landmarks_txt(path: Path) -> np.ndarray:
    try:
        rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a table of 'x y' landmark rows ({e})") from e
    return parse_landmarks(rows, str(path))


@register_dataset("facesynthetics")
class FaceSynthetics(RenderSource):
    """A folder in the Face Synthetics layout; ``_ldmks.txt`` is optional, ``_seg.png`` is required."""

    def _list(self) -> list[Path]:
        return [p for stem, p in list_files(self.root, (".png",)).items() if _FRAME.match(stem)]

    def load(self, index: int) -> Render:
        path, rid = self.paths[index], self.ids[index]
        rgb = read_rgb(path)
        face, hair = read_segmentation(path.with_name(f"{rid}_seg.png"), rgb.shape[:2])
        ldmk_path = path.with_name(f"{rid}_ldmks.txt")
        landmarks = read_landmarks_txt(ldmk_path) if ldmk_path.is_file() else None
        return Render(rid, rgb, face, hair, landmarks, str(path))
