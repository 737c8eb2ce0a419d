"""Microsoft Face Synthetics layout (Wood et al. 2021): ``NNNNNN.png``, ``NNNNNN_seg.png``, ``NNNNNN_ldmks.txt``.

The segmentation's classes give the face mask (skin, nose, eyes, brows, ears, mouth, lips, beard,
glasses, facewear) and the hair mask (hair, headwear); neck, clothing and background are neither.
The landmark file has 70 rows "x y": iBUG's 68, then the two pupils (ignored here).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from render2style.datasets.registry import register_dataset
from render2style.datasets.renders import Render, RenderSource, list_files, parse_landmarks, read_rgb

FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 16, 18)
HAIR_CLASSES = (13, 17)
_FRAME = re.compile(r"^\d+$")


def read_class_map(path: Path) -> np.ndarray:
    """A single-channel segmentation PNG as its raw class indices ``[H, W]`` (palette kept as indices)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such segmentation file")
    try:
        with Image.open(path) as img:
            img.load()
            mode, arr = img.mode, np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel class map, got mode {mode}")
    return arr


def masks_from_segmentation(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face and hair masks (float32 0/1) from a Face Synthetics class map."""
    return (np.isin(seg, FACE_CLASSES).astype(np.float32),
            np.isin(seg, HAIR_CLASSES).astype(np.float32))


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
        seg_path = path.with_name(f"{rid}_seg.png")
        seg = read_class_map(seg_path)
        if seg.shape != rgb.shape[:2]:
            raise ValueError(f"{seg_path}: segmentation is {seg.shape[1]}x{seg.shape[0]}, "
                             f"the render is {rgb.shape[1]}x{rgb.shape[0]}")
        face, hair = masks_from_segmentation(seg)
        ldmk_path = path.with_name(f"{rid}_ldmks.txt")
        landmarks = read_landmarks_txt(ldmk_path) if ldmk_path.is_file() else None
        return Render(rid, rgb, face, hair, landmarks, str(path))
