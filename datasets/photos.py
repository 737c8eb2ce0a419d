"""Photo collections as one in-memory uint8 array at a training resolution (centre-cropped, area-resized)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from render2style.datasets.registry import build_render_source
from render2style.utils.io import atomic_save_npy

log = logging.getLogger(__name__)


def center_crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3]: the central square, resized with a box (area) filter when shrinking."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(rgb[top:top + s, left:left + s])
    resample = Image.Resampling.BOX if s >= size else Image.Resampling.BICUBIC
    return np.asarray(img.resize((size, size), resample))


def load_photo_array(root: str | os.PathLike, size: int, cache: str | os.PathLike | None = None,
                     layout: str = "images") -> tuple[np.ndarray, list[str]]:
    """Every image of ``root`` (sorted by id) as uint8 [N, 3, size, size], and the ids.

    With ``cache`` (a ``.npy`` path), the array is read from it when it holds the same number of images and
    written to it (atomically) otherwise.
    """
    source = build_render_source(layout, root)
    ids = list(source.ids)
    if not ids:
        raise ValueError(f"{root}: no images found (expected image files for the '{layout}' layout)")
    if cache is not None and Path(cache).is_file():
        arr = np.load(cache, mmap_mode="r")
        if arr.shape == (len(ids), 3, size, size):
            return np.ascontiguousarray(arr), ids
        log.info("%s: shape %s does not match %d images at %d², rebuilding", cache, arr.shape, len(ids), size)
    arr = np.empty((len(ids), 3, size, size), np.uint8)
    for i in range(len(ids)):
        arr[i] = center_crop_resize(source[i].rgb, size).transpose(2, 0, 1)
        if (i + 1) % 5000 == 0:
            log.info("decoded %d/%d images from %s", i + 1, len(ids), root)
    if cache is not None:
        atomic_save_npy(arr, cache)
    return arr, ids
