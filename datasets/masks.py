"""Where a render's masks live, in one place for training, inference, alignment and paste-back.

Face mask: ``<id>_mask.png``, else the face classes of a Face Synthetics ``<id>_seg.png``, else the
image's own alpha channel (a palette image only when it has transparency). Hair mask: ``<id>_hair.png``,
else the segmentation's hair classes. Every mask is float32 ``[H, W]`` in [0, 1] and must have the
render's size.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from render2style.utils.io import open_image, to_rgb_uint8

# Face Synthetics classes (Wood et al. 2021): skin, nose, eyes, brows, ears, mouth, lips, beard, glasses,
# facewear are face; hair and headwear are hair; neck, clothing and background neither.
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 16, 18)
HAIR_CLASSES = (13, 17)


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as float32 ``[H, W]`` in [0, 1]; its size must be ``shape`` (the render's) when given."""
    mask = to_rgb_uint8(open_image(path), path).max(axis=2).astype(np.float32) / 255.0
    if shape is not None and mask.shape != tuple(shape):
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                         f"the render is {shape[1]}x{shape[0]}")
    return mask


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


def read_segmentation(path: Path, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(face, hair) masks of a Face Synthetics ``_seg.png``, whose size must be ``shape`` when given."""
    seg = read_class_map(path)
    if shape is not None and seg.shape != tuple(shape):
        raise ValueError(f"{path}: segmentation is {seg.shape[1]}x{seg.shape[0]}, "
                         f"the render is {shape[1]}x{shape[0]}")
    return masks_from_segmentation(seg)


def side_masks(path: str | os.PathLike, shape: tuple[int, int] | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(face, hair) masks of the render ``path`` from its side files, each None when absent."""
    path = Path(path)
    side = {kind: path.with_name(f"{path.stem}_{kind}.png") for kind in ("mask", "hair", "seg")}
    seg_face = seg_hair = None
    if side["seg"].is_file():
        seg_face, seg_hair = read_segmentation(side["seg"], shape)
    face = read_mask(side["mask"], shape) if side["mask"].is_file() else seg_face
    hair = read_mask(side["hair"], shape) if side["hair"].is_file() else seg_hair
    return face, hair


def render_masks(path: str | os.PathLike, img: Image.Image) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(face, hair) masks of the render ``path`` (already opened as ``img``): side files, else alpha for the face."""
    face, hair = side_masks(path, (img.height, img.width))
    if face is None and "A" in img.getbands():
        face = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
    return face, hair
