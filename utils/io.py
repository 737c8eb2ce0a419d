"""Atomic file writes and image reading with clear errors.

A crash while writing leaves either the old file or no file, never a partial one: every writer
writes to a temporary file in the destination folder and then ``os.replace``s it into place.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

_UMASK = os.umask(0)
os.umask(_UMASK)

#: below this many free bytes a failed write is reported as a full disk (numpy and torch's zip writer
#: raise errors without an errno: "5120 requested and 5088 written", "file write failed")
_NEARLY_FULL = 16 * 2 ** 20
TEMP_SUFFIX = ".tmp"


def _disk_full(error: BaseException, folder: Path) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_file(path) as f:`` a file that appears at ``path`` only when the block finishes (a
    temp file in the same folder, fsynced and ``os.replace``d into place; removed when the block fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)) and _disk_full(e, path.parent):
            raise OSError(errno.ENOSPC, f"{path}: no space left on device while writing it ({e})") from e
        raise


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    with atomic_file(path, mode) as f:
        write(f)


def temp_file_target(path: str | os.PathLike) -> str | None:
    """The file name an atomic writer's temp file ``.<name>.<random>.tmp`` was for; None for other files."""
    name = Path(path).name
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    return name[1:].rsplit(".", 2)[0]


def sweep_temp_files(folder: str | os.PathLike, names: set[str] | None = None) -> int:
    """Delete the temp files of interrupted atomic writes in ``folder`` (only those for ``names`` when
    given); returns how many. Call it only where no live process is writing those names."""
    folder = Path(folder)
    removed = 0
    for f in folder.iterdir() if folder.is_dir() else ():
        target = temp_file_target(f)
        if target is not None and (names is None or target in names):
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file."""
    import torch  # here, so that tools importing this module parse their options fast
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_save_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """``np.save`` that never leaves a partial file."""
    _atomic_write(path, lambda f: np.save(f, array))


def atomic_save_npz(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """``np.savez`` of named arrays that never leaves a partial file."""
    _atomic_write(path, lambda f: np.savez(f, **arrays))


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
    """Open and fully decode an image (a palette image as RGBA when it has transparency, else RGB); raise
    ``ValueError`` naming the file when it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":  # a palette's alpha only when it declares transparency
                return img.convert("RGBA" if "transparency" in img.info else "RGB")
            return img.copy()
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
