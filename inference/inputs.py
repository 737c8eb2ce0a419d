"""encode.py's inputs: one image, a folder, a glob or a video (PyAV: the ``video`` extra), streamed
through a prefetching DataLoader.

Every item becomes ``{"name", "image" [C, S, S] float, "error", "time"}`` (plus ``"target"`` and
``"loss_mask"`` for refinement at inference); ``name`` is the file's path relative
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
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from render2style.datasets.masks import render_masks
from render2style.datasets.renders import check_size
from render2style.datasets.training_dataset import encoder_input, resize_render
from render2style.options.encode_options import DEFAULT_EXCLUDE, is_video
from render2style.utils.io import open_image, to_rgb_uint8

#: (rgb, face mask, hair mask) -> (refinement target [3, R, R], its loss mask Ia [1, R, R])
TargetFn = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], tuple[torch.Tensor, torch.Tensor]]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}


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


def read_render(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(uint8 RGB, float32 face mask or None, float32 hair mask or None) of any image; the masks from where
    training reads them (``datasets.masks.render_masks``: side files, then alpha). ValueError naming the file
    when unreadable."""
    img = open_image(path)
    rgb = to_rgb_uint8(img, path)
    check_size(path, img.width, img.height)
    return (rgb, *render_masks(path, img))


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 RGB, float32 face mask or None) of any image (:func:`read_render` without the hair mask)."""
    return read_render(path)[:2]


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


def make_item(name: str, rgb: np.ndarray, face: np.ndarray | None, hair: np.ndarray | None, size: int,
              input_nc: int, time: float, target: TargetFn | None) -> dict:
    """One loader item: the encoder input, the frame time and, with ``target``, the refinement target and Ia."""
    item = {"name": name, "image": to_input_tensor(rgb, face, size, input_nc), "error": None, "time": time}
    if target is not None:
        item["target"], item["loss_mask"] = target(rgb, face, hair)
    return item


class ImageInputs(Dataset):
    """Map-style dataset over image files (parallel, ordered); item names from :func:`input_names`.

    Item ``i``'s time is ``i / frame_rate`` seconds (an image sequence). ``target``: see :func:`make_loader`."""

    def __init__(self, files: Sequence[Path], size: int, input_nc: int = 3, root: Path | None = None,
                 frame_rate: float = 1.0, target: TargetFn | None = None):
        self.files, self.size, self.input_nc = list(files), size, input_nc
        self.names = input_names(self.files, root) if root is not None else [f.stem for f in self.files]
        self.frame_rate, self.target = frame_rate, target

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path, name = self.files[i], self.names[i]
        try:
            return make_item(name, *read_render(path), self.size, self.input_nc, i / self.frame_rate, self.target)
        except (ValueError, OSError) as e:
            return {"name": name, "image": None, "error": str(e)}


class VideoFrames(IterableDataset):
    """Frames of a video (PyAV, ``inference.video``) read one at a time (never all in memory), each with its
    presentation time; a missing or unreadable file is an error naming it when the dataset is made."""

    def __init__(self, path: str | os.PathLike, size: int, input_nc: int = 3, every: int = 1,
                 max_frames: int | None = None, target: TargetFn | None = None):
        from render2style.inference.video import video_info

        self.path, self.size, self.input_nc = Path(path), size, input_nc
        self.every, self.max_frames, self.target = max(1, every), max_frames, target
        self.info = video_info(self.path)

    def __iter__(self) -> Iterator[dict]:
        from render2style.inference.video import read_frames

        info = get_worker_info()
        if info is not None and info.id > 0:      # one reader; extra workers would duplicate frames
            return
        emitted = 0
        for index, time, rgb in read_frames(self.path):
            if self.max_frames is not None and emitted >= self.max_frames:
                break
            if index % self.every == 0:
                yield make_item(f"{self.path.stem}_{index:06d}", rgb, None, None, self.size, self.input_nc, time,
                                self.target)
                emitted += 1


@dataclass
class Batch:
    names: list[str]
    images: torch.Tensor | None                    # [B, C, S, S] or None when every item failed
    errors: list[tuple[str, str]] = field(default_factory=list)   # (name, message)
    times: list[float] = field(default_factory=list)               # seconds: video timestamps, or index / fps
    targets: torch.Tensor | None = None            # [B, 3, R, R] refinement targets (generator resolution R)
    loss_masks: torch.Tensor | None = None         # [B, 1, R, R] their Ia


def collate(items: list[dict]) -> Batch:
    good = [it for it in items if it["error"] is None]

    def stack(key: str) -> torch.Tensor | None:
        return torch.stack([it[key] for it in good]) if good and key in good[0] else None

    return Batch(names=[it["name"] for it in good], images=stack("image"),
                 errors=[(it["name"], it["error"]) for it in items if it["error"] is not None],
                 times=[it["time"] for it in good], targets=stack("target"), loss_masks=stack("loss_mask"))


def make_loader(spec: str, size: int, input_nc: int, batch_size: int, workers: int = 2,
                pin_memory: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                video_every: int = 1, max_frames: int | None = None, frame_rate: float = 1.0,
                target: TargetFn | None = None) -> tuple[DataLoader, int | None]:
    """A prefetching DataLoader of :class:`Batch` for ``spec``, and the number of items (None for videos).

    ``frame_rate``: the times of images (item i at i / frame_rate s; videos carry their own).
    ``target(rgb, face, hair) -> (target, Ia)``: also load refinement targets (``inference.refine.refine_target``
    with the generator's size; a picklable callable, e.g. a ``functools.partial``, for worker processes)."""
    if is_video(spec):
        dataset = VideoFrames(spec, size, input_nc, video_every, max_frames, target=target)
        count, workers = None, min(workers, 1)
    else:
        dataset = ImageInputs(list_images(spec, exclude), size, input_nc, root=input_root(spec),
                              frame_rate=frame_rate, target=target)
        count = len(dataset)
    kwargs = dict(num_workers=workers, prefetch_factor=4, persistent_workers=False) if workers > 0 else {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        pin_memory=pin_memory, **kwargs)
    return loader, count
