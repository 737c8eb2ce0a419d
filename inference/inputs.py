"""encode.py's inputs: one image, a folder, a glob or a video, streamed through a prefetching DataLoader.

Every item becomes ``{"name", "image" [C, S, S] float, "error"}``; ``name`` is the file's path relative
to the input folder (or the glob's fixed prefix) without its suffix, so ``a/x.png`` and ``b/x.png`` never
share outputs. An unreadable file does not stop the loader: its item carries the error message (naming
the file) and ``collate`` sets it aside, so the caller decides whether to continue or fail.

The encoder input is built exactly as in training: RGB unchanged (a render's alpha is its face mask, an
annotation, not transparency) and, for a 4-channel encoder, the face mask from the same place the
training data reads it (``<id>_mask.png``, a Face Synthetics ``_seg.png``, or alpha); an image with no
mask at all (a plain photo) is "all face".
"""
from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from render2style.datasets.masks import render_masks
from render2style.datasets.renders import check_size
from render2style.datasets.training_dataset import encoder_input, resize_render
from render2style.options.encode_options import DEFAULT_EXCLUDE
from render2style.utils.io import open_image, to_rgb_uint8

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def list_images(spec: str, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[Path]:
    """Image files named by ``spec``: a file, a folder (sorted, not recursive) or a glob pattern."""
    p = Path(spec)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    else:
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        if not files and not glob.has_magic(spec):
            raise FileNotFoundError(f"{spec}: no such file, folder or glob match")
    files = [f for f in files if not any(fnmatch.fnmatch(f.name, pat) for pat in exclude)]
    if not files:
        raise FileNotFoundError(f"{spec}: no input images found (extensions {sorted(IMAGE_EXTS)})")
    return files


def to_input_tensor(rgb: np.ndarray, mask: np.ndarray | None, size: int, input_nc: int) -> torch.Tensor:
    """uint8 RGB [H, W, 3] (+ float face mask [H, W], None: all face) -> encoder input [input_nc, size, size].

    The training dataset's resizing and channel convention (``resize_render``, ``encoder_input``).
    """
    mask = np.ones(rgb.shape[:2], np.float32) if mask is None else mask
    return encoder_input(*resize_render(rgb, mask, size), input_nc)


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 RGB, float32 face mask or None) of any image; the mask from where training reads it
    (``datasets.masks.render_masks``: side files, then alpha). ValueError naming the file when unreadable."""
    img = open_image(path)
    rgb = to_rgb_uint8(img, path)
    check_size(path, img.width, img.height)
    return rgb, render_masks(path, img)[0]


def input_names(files: Sequence[Path], root: Path) -> list[str]:
    """Output names: each file's path relative to ``root`` without its suffix (``a/x.png`` -> ``a/x``);
    ValueError listing the files when two would share a name (``x.png`` and ``x.jpg``)."""
    names = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    seen: dict[str, list[Path]] = {}
    for name, f in zip(names, files):
        seen.setdefault(name, []).append(f)
    clashes = {n: fs for n, fs in seen.items() if len(fs) > 1}
    if clashes:
        detail = "; ".join(f"{n}: {', '.join(str(f) for f in fs)}" for n, fs in sorted(clashes.items()))
        raise ValueError(f"inputs under {root} would overwrite each other's outputs ({detail}); "
                         "rename them or encode them separately")
    return names


def input_root(spec: str) -> Path:
    """The folder output names are relative to: the folder itself, a file's folder, a glob's fixed prefix."""
    p = Path(spec)
    if p.is_dir():
        return p
    if p.is_file():
        return p.parent
    fixed = []
    for part in p.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


class ImageInputs(Dataset):
    """Map-style dataset over image files (parallel, ordered); item names from :func:`input_names`."""

    def __init__(self, files: Sequence[Path], size: int, input_nc: int = 3, root: Path | None = None):
        self.files, self.size, self.input_nc = list(files), size, input_nc
        self.names = input_names(self.files, root) if root is not None else [f.stem for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path, name = self.files[i], self.names[i]
        try:
            rgb, mask = read_image(path)
            return {"name": name, "image": to_input_tensor(rgb, mask, self.size, self.input_nc), "error": None}
        except (ValueError, OSError) as e:
            return {"name": name, "image": None, "error": str(e)}


class VideoFrames(IterableDataset):
    """Frames of a video read one at a time with ``cv2.VideoCapture`` (never all in memory)."""

    def __init__(self, path: str | os.PathLike, size: int, input_nc: int = 3, every: int = 1,
                 max_frames: int | None = None):
        self.path, self.size, self.input_nc = Path(path), size, input_nc
        self.every, self.max_frames = max(1, every), max_frames
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such video file")
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
        if not ok:
            raise ValueError(f"{self.path}: cannot read video frames (corrupt file, or a codec OpenCV lacks)")

    def __iter__(self) -> Iterator[dict]:
        import cv2

        info = get_worker_info()
        if info is not None and info.id > 0:      # one reader; extra workers would duplicate frames
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = emitted = 0
            while self.max_frames is None or emitted < self.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % self.every == 0:
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    yield {"name": f"{self.path.stem}_{index:06d}",
                           "image": to_input_tensor(rgb, None, self.size, self.input_nc), "error": None}
                    emitted += 1
                index += 1
        finally:
            cap.release()


@dataclass
class Batch:
    names: list[str]
    images: torch.Tensor | None                    # [B, C, S, S] or None when every item failed
    errors: list[tuple[str, str]] = field(default_factory=list)   # (name, message)


def collate(items: list[dict]) -> Batch:
    good = [it for it in items if it["error"] is None]
    return Batch(names=[it["name"] for it in good],
                 images=torch.stack([it["image"] for it in good]) if good else None,
                 errors=[(it["name"], it["error"]) for it in items if it["error"] is not None])


def make_loader(spec: str, size: int, input_nc: int, batch_size: int, workers: int = 2,
                pin_memory: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                video_every: int = 1, max_frames: int | None = None) -> tuple[DataLoader, int | None]:
    """A prefetching DataLoader of :class:`Batch` for ``spec``, and the number of items (None for videos)."""
    if is_video(spec):
        dataset, count, workers = VideoFrames(spec, size, input_nc, video_every, max_frames), None, min(workers, 1)
    else:
        dataset = ImageInputs(list_images(spec, exclude), size, input_nc, root=input_root(spec))
        count = len(dataset)
    kwargs = dict(num_workers=workers, prefetch_factor=4, persistent_workers=False) if workers > 0 else {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        pin_memory=pin_memory, **kwargs)
    return loader, count
