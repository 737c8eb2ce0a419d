"""Atomic file writes and image reading with clear errors.

A crash while writing leaves either the old file or no file, never a partial one: every writer
writes to a temporary file in the destination folder and then ``os.replace``s it into place.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_save_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """``np.save`` that never leaves a partial file."""
    _atomic_write(path, lambda f: np.save(f, array))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    _atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True), path)


def atomic_save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Save a PIL image (format from the suffix) without leaving a partial file."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")

    def write(f):
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        f.write(buf.getvalue())

    _atomic_write(path, write)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image; raise ``ValueError`` naming the file when it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy() if img.mode != "P" else img.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def to_rgb_uint8(img: Image.Image, path: str | os.PathLike = "<image>") -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK) to an ``[H, W, 3]`` uint8 array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise ValueError(f"{path}: unsupported image mode {img.mode!r}")
