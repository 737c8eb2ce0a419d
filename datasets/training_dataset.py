"""The encoder's training data: renders (any render source) plus, optionally, the teacher's targets.

Each item is a dict:
  ``input``  float ``[input_nc, R, R]`` in [-1, 1]; channels 0-2 the (augmented) render RGB; with
             ``input_nc=4`` channel 3 is the face mask mapped to [-1, 1] (``2 * mask - 1``, see
             ``encoder_input``, which inference uses too)
  ``target`` float ``[3, R, R]`` in [-1, 1]: the teacher image G(w*) when the id has a finished target,
             otherwise the clean (un-augmented) render RGB
  ``mask``   float ``[1, R, R]`` in [0, 1]: the face mask
  ``latent`` float32 ``[n_latent, 512]`` w* (zeros when ``has_latent`` is False)
  ``has_latent``, ``flipped``: bool tensors; ``id``: the render id.
A horizontal flip (train split only, probability ``flip_p``) flips input, mask and target together; it
uses the flipped render's targets (``<id>_flip``) when they are finished, otherwise it keeps the flipped
teacher image as the target and sets ``has_latent`` False (a flip has no W+ counterpart).
Random draws (flip, augmentation seed) come from ``torch``'s global RNG inside ``__getitem__``, so a
seeded run, DataLoader worker seeding and ``training.data.SeededItems`` all make them reproducible.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Sequence
from typing import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from render2style.datasets.augmentations import photometric_augmentations
from render2style.datasets.renders import Render
from render2style.datasets.targets import STYLE_DIM, TargetFolder

log = logging.getLogger(__name__)


def split_ids(ids: Sequence[str], test_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/test split by a stable hash of each id (SHA-1, not Python's salted ``hash``).

    An id's split never depends on the other ids, except that when the hash leaves the test split
    empty (tiny datasets), the id with the smallest hash is moved to it.
    """
    def unit(rid: str) -> float:
        return int.from_bytes(hashlib.sha1(rid.encode("utf-8")).digest()[:8], "big") / 2 ** 64

    scores = {rid: unit(rid) for rid in ids}
    test = {rid for rid, s in scores.items() if s < test_fraction}
    if not test and test_fraction > 0 and len(ids) >= 2:
        test = {min(scores, key=scores.get)}
    return [r for r in ids if r not in test], [r for r in ids if r in test]


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``[H, W(, C)]`` array to ``size x size`` (area filter down, bilinear up)."""
    if arr.shape[:2] == (size, size):
        return arr
    interp = cv2.INTER_AREA if min(arr.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(arr), (size, size), interpolation=interp)


def resize_render(rgb: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB ``[H, W, 3]`` and float mask ``[H, W]`` at the encoder's ``size`` (the mask kept in [0, 1])."""
    return resize(rgb, size), np.clip(resize(mask.astype(np.float32), size), 0.0, 1.0)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def encoder_input(rgb: np.ndarray, mask: np.ndarray, input_nc: int) -> torch.Tensor:
    """The encoder's input ``[input_nc, H, W]``: RGB in [-1, 1], plus ``2 * mask - 1`` when ``input_nc == 4``."""
    x = to_tensor(rgb)
    if input_nc == 3:
        return x
    if input_nc == 4:
        return torch.cat([x, torch.from_numpy(mask.astype(np.float32))[None] * 2 - 1])
    raise ValueError(f"input_nc must be 3 (RGB) or 4 (RGB + mask), got {input_nc}")


class EncoderDataset(Dataset):
    """Renders (+ teacher targets) for encoder training; ``split`` 'train' is augmented, 'test' is not.

    ``transform`` is an albumentations-style callable ``transform(image=uint8) -> {"image": ...}``
    applied to the input only; ``"default"`` means ``photometric_augmentations()``, ``None`` none.
    ``n_latent`` is read from the targets when omitted; it must be given when there are none.
    ``exclude``: ids left out (the unusable renders ``screen_renders`` found).
    """

    def __init__(self, source, targets_dir: str | os.PathLike | None = None, split: str = "train",
                 test_fraction: float = 0.1, resolution: int = 256, input_nc: int = 3,
                 transform: Callable | str | None = "default", flip_p: float = 0.5,
                 skip_corrupt: bool = False, n_latent: int | None = None, exclude: Collection[str] = ()):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if input_nc not in (3, 4):
            raise ValueError(f"input_nc must be 3 (RGB) or 4 (RGB + mask), got {input_nc}")
        self.source = source
        self.train = split == "train"
        self.resolution = resolution
        self.input_nc = input_nc
        self.flip_p = flip_p if self.train else 0.0
        if not self.train or transform is None:
            self.transform = None
        else:
            self.transform = photometric_augmentations() if transform == "default" else transform
        self.skip_corrupt = skip_corrupt
        self.n_skipped = 0
        self.targets = TargetFolder(targets_dir, n_latent) if targets_dir is not None else None
        self.n_latent = self.targets.n_latent if self.targets is not None else n_latent
        if self.n_latent is None:
            raise ValueError("n_latent is unknown: pass n_latent (the generator's) when there are no targets")
        train_ids, test_ids = split_ids(list(source.ids), test_fraction)  # splits do not depend on ``exclude``
        excluded = set(exclude)
        self.ids = [r for r in (train_ids if self.train else test_ids) if r not in excluded]
        position = {rid: i for i, rid in enumerate(source.ids)}
        self.positions = [position[r] for r in self.ids]
        self._log_summary(split)

    def _log_summary(self, split: str) -> None:
        if self.targets is None:
            log.info("%s split: %d renders, no targets (target = input, no latent loss)", split, len(self))
            return
        done = sum(self.targets.finished(r) for r in self.ids)
        flips = sum(self.targets.finished(f"{r}_flip") for r in self.ids)
        log.info("%s split: %d renders, %d with teacher targets, %d with flipped targets", split, len(self),
                 done, flips)
        if done < len(self):
            log.warning("%s split: %d of %d renders have no teacher target yet: they train as self-reconstruction "
                        "of the render (target = input, no latent loss); finish the target job first for purely "
                        "amortized training", split, len(self) - done, len(self))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                return self._item(self.source[self.positions[i]])
            except (ValueError, OSError) as e:
                if not self.skip_corrupt:
                    raise
                self.n_skipped += 1
                log.warning("skipping unreadable item %s (%s); %d skipped so far in this process",
                            self.ids[i], e, self.n_skipped)
        raise ValueError(f"{getattr(self.source, 'root', 'the render source')}: all {len(self)} items of the "
                         f"{'train' if self.train else 'test'} split are unreadable")

    def _item(self, render: Render) -> dict:
        flip = self.flip_p > 0 and bool(torch.rand(()) < self.flip_p)
        rgb, mask = resize_render(render.rgb, render.face_mask, self.resolution)
        if flip:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
        target, latent = self._target(render.id, flip, rgb)
        inp = rgb
        if self.transform is not None:
            if hasattr(self.transform, "set_random_seed"):  # albumentations >= 2 draws from its own RNG
                self.transform.set_random_seed(int(torch.randint(2 ** 31 - 1, ())))
            inp = self.transform(image=np.ascontiguousarray(rgb))["image"]
        has_latent = latent is not None
        if latent is None:
            latent = np.zeros((self.n_latent, STYLE_DIM), np.float32)
        return {
            "input": encoder_input(inp, mask, self.input_nc),
            "target": to_tensor(target),
            "mask": torch.from_numpy(mask.copy())[None],
            "latent": torch.from_numpy(latent),
            "has_latent": torch.tensor(has_latent),
            "flipped": torch.tensor(flip),
            "id": render.id,
        }

    def _target(self, rid: str, flip: bool, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Target image (already flipped when ``flip``) and W+ code, or ``None`` when there is no valid code."""
        t = self.targets
        if t is None or not t.finished(rid):
            return rgb, None
        if flip and t.finished(f"{rid}_flip"):
            return resize(t.image(f"{rid}_flip"), self.resolution), t.latent(f"{rid}_flip")
        image = resize(t.image(rid), self.resolution)
        if flip:
            return image[:, ::-1], None
        return image, t.latent(rid)
