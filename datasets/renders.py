"""Render sources: folders of renders read as ``Render`` records (what the teacher and the trainer use).

A source lists its ids cheaply at construction (file names only, nothing decoded), so sharded jobs
can split ``source.ids``; ``source[i]`` decodes item ``i``. An unreadable or corrupt file raises
``ValueError`` (``FileNotFoundError`` for a missing one) naming the file. With ``skip_corrupt=True``,
``source.get(i)`` returns ``None`` for such items and iteration skips them; both count them in
``source.n_skipped`` and log them.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render2style.datasets.masks import render_masks
from render2style.datasets.registry import register_dataset
from render2style.utils.io import open_image, to_rgb_uint8

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: smallest accepted render side, in pixels (the encoder's and the teacher's smallest working size)
MIN_SIZE = 32


# iBUG-68 index of each landmark's mirror image (left and right swap under a horizontal flip).
IBUG_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


@dataclass
class Render:
    """One render: RGB, face mask (1 = face), optional hair mask and 68 iBUG landmarks in pixels."""

    id: str
    rgb: np.ndarray                 # uint8 [H, W, 3]
    face_mask: np.ndarray           # float32 [H, W] in [0, 1]
    hair_mask: np.ndarray | None    # float32 [H, W] in [0, 1]
    landmarks: np.ndarray | None    # float32 [68, 2], (x, y) pixels
    path: str

    def flipped(self) -> Render:
        """The horizontal mirror image, id ``<id>_flip`` (the target folder's name for its targets).

        Landmarks move to ``x' = W - 1 - x`` (pixel centres at integers) and swap sides, so the
        result is again in iBUG order.
        """
        landmarks = None
        if self.landmarks is not None:
            landmarks = self.landmarks[IBUG_MIRROR].copy()
            landmarks[:, 0] = self.rgb.shape[1] - 1 - landmarks[:, 0]
        hair = None if self.hair_mask is None else self.hair_mask[:, ::-1].copy()
        return Render(f"{self.id}_flip", self.rgb[:, ::-1].copy(), self.face_mask[:, ::-1].copy(), hair,
                      landmarks, self.path)


def check_size(path: str | os.PathLike, width: int, height: int) -> None:
    """Raise ``ValueError`` naming ``path`` when a side is below ``MIN_SIZE`` pixels."""
    if min(width, height) < MIN_SIZE:
        raise ValueError(f"{path}: image is {width}x{height}, expected at least {MIN_SIZE} px on each side")


def check_render(render: Render) -> None:
    """Raise ``ValueError`` naming the render's file when a side is below ``MIN_SIZE`` or its face mask is empty."""
    check_size(render.path, render.rgb.shape[1], render.rgb.shape[0])
    if not np.any(np.asarray(render.face_mask) > 0):
        raise ValueError(f"{render.path}: the face mask is empty (no pixel > 0); a render needs a face mask "
                         "marking the face (alpha, <id>_mask.png or the segmentation)")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Any image file as uint8 ``[H, W, 3]`` (grayscale, palette and 16-bit images converted)."""
    return np.array(to_rgb_uint8(open_image(path), path))  # a writable copy


def parse_landmarks(points, where: str) -> np.ndarray:
    """``[N >= 68, 2]`` points -> float32 ``[68, 2]`` (the first 68 are iBUG's; extra points ignored)."""
    try:
        arr = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: landmarks are not numbers ({e})") from e
    if arr.ndim != 2 or arr.shape[0] < 68 or arr.shape[1] != 2:
        raise ValueError(f"{where}: expected at least 68 (x, y) landmarks, got shape {list(arr.shape)}")
    return arr[:68]


def list_files(root: Path, suffixes=IMAGE_SUFFIXES) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``root`` (hidden/temporary files ignored)."""
    found: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            raise ValueError(f"{root}: two images share the id {path.stem!r}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


class RenderSource:
    """Base class of the named render sources. Subclasses implement ``_list()`` and ``load(index)``."""

    def __init__(self, root: str | os.PathLike, skip_corrupt: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder of renders")
        self.skip_corrupt = skip_corrupt
        self.n_skipped = 0
        self.paths: list[Path] = self._list()
        self.ids: list[str] = [p.stem for p in self.paths]
        self._positions = {rid: i for i, rid in enumerate(self.ids)}
        log.info("%s: %d items in %s", type(self).__name__, len(self.ids), self.root)

    def _list(self) -> list[Path]:
        raise NotImplementedError

    def load(self, index: int) -> Render:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Render:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} renders")
        render = self.load(index % len(self))
        check_render(render)
        return render

    def position(self, render_id: str) -> int:
        """Index of the render with this id."""
        return self._positions[render_id]

    def get(self, index: int) -> Render | None:
        """``self[index]``, or ``None`` (counted in ``n_skipped``) for an unreadable item when skipping."""
        try:
            return self[index]
        except (ValueError, OSError) as e:
            if not self.skip_corrupt:
                raise
            self.n_skipped += 1
            log.warning("skipping unreadable render %s (%s); %d skipped so far", self.ids[index], e, self.n_skipped)
            return None

    def __iter__(self) -> Iterator[Render]:
        for i in range(len(self)):
            render = self.get(i)
            if render is not None:
                yield render
        if self.n_skipped:
            log.warning("%s: skipped %d unreadable renders in %s", type(self).__name__, self.n_skipped, self.root)


@register_dataset("renders")
class RenderFolder(RenderSource):
    """``<id>.png`` RGBA (alpha = face mask), or RGB/any image + ``<id>_mask.png`` (masks: ``datasets.masks``);
    optional ``<id>_hair.png`` and ``annotations.json`` ``{id: {"landmarks": [[x, y], ...68], ...}}``."""

    COMPANIONS = ("_mask", "_hair", "_seg")

    def __init__(self, root: str | os.PathLike, skip_corrupt: bool = False):
        super().__init__(root, skip_corrupt)
        self.annotations = self._read_annotations(self.root / "annotations.json")

    def _list(self) -> list[Path]:
        return [p for stem, p in list_files(self.root).items() if not stem.endswith(self.COMPANIONS)]

    @staticmethod
    def _read_annotations(path: Path) -> dict:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not readable JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object {{id: {{...}}}}, got {type(data).__name__}")
        return data

    def load(self, index: int) -> Render:
        path, rid = self.paths[index], self.ids[index]
        img = open_image(path)
        rgb = np.array(to_rgb_uint8(img, path))
        face, hair = render_masks(path, img)
        if face is None:
            raise ValueError(f"{path}: mode {img.mode} has no alpha and there is no {rid}_mask.png or {rid}_seg.png; "
                             f"a render needs a face mask ({_dataset_hint(path)})")
        entry = self.annotations.get(rid)
        landmarks = None
        if isinstance(entry, dict) and entry.get("landmarks") is not None:
            landmarks = parse_landmarks(entry["landmarks"], f"{self.root / 'annotations.json'} [{rid}]")
        return Render(rid, rgb, face, hair, landmarks, str(path))


def _dataset_hint(path: Path) -> str:
    """Which ``--dataset`` a render without a face mask probably needs."""
    if path.stem.isdigit() and any(path.parent.glob("*_seg.png")):
        return "this folder looks like Face Synthetics renders: pass --dataset facesynthetics"
    return "Face Synthetics renders: --dataset facesynthetics; plain photos: --dataset images"
