"""Writing encode.py's results: images, W+ codes, side-by-side grids and frame sequences."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from render2style.utils.io import atomic_save_image, atomic_save_npy, atomic_write_json


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> uint8 [B, H, W, 3] (only the first 3 channels)."""
    x = ((images[:, :3].detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_images(images: torch.Tensor, names: Sequence[str], folder: str | os.PathLike, suffix: str = "") -> None:
    for arr, name in zip(to_uint8(images), names):
        atomic_save_image(Image.fromarray(arr), Path(folder) / f"{name}{suffix}.png")


def save_codes(codes: torch.Tensor, names: Sequence[str], folder: str | os.PathLike, suffix: str = "") -> None:
    """One float32 ``<name><suffix>.npy`` [n_latent, 512] per input (the target-folder format)."""
    for code, name in zip(codes.detach().float().cpu().numpy(), names):
        atomic_save_npy(code, Path(folder) / f"{name}{suffix}.npy")


def save_batch_codes(codes: torch.Tensor, names: Sequence[str], folder: str | os.PathLike, index: int) -> None:
    """``codes_<index>.npy`` [B, n_latent, 512] and ``codes_<index>.json`` (the B names, in order)."""
    atomic_save_npy(codes.detach().float().cpu().numpy(), Path(folder) / f"codes_{index:05d}.npy")
    atomic_write_json({"names": list(names)}, Path(folder) / f"codes_{index:05d}.json")


def side_by_side(columns: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Concatenate [B, C, *, *] image batches left to right, each resized to ``size``² (RGB channels only)."""
    cols = [c[:, :3].float() if c.shape[-1] == size else F.interpolate(
        c[:, :3].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True) for c in columns]
    return torch.cat(cols, dim=-1)


def save_sequence(frames: np.ndarray, folder: str | os.PathLike, video: str = "none", fps: float = 8.0) -> list[Path]:
    """Frames uint8 [N, H, W, 3] -> ``frame_XXXX.png`` (+ ``morph.mp4`` or ``morph.gif``); returns the paths."""
    folder = Path(folder)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"frame_{i:04d}.png")
        atomic_save_image(Image.fromarray(frame), paths[-1])
    if video == "mp4":
        import cv2

        path = folder / "morph.mp4"
        h, w = frames.shape[1:3]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot write mp4v video on this system; use --interp_video gif")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        paths.append(path)
    elif video == "gif":
        path = folder / "morph.gif"
        first, *rest = [Image.fromarray(f) for f in frames]
        first.save(path, save_all=True, append_images=rest, duration=int(1000 / fps), loop=0)
        paths.append(path)
    return paths


def write_summary(summary: dict, folder: str | os.PathLike) -> None:
    atomic_write_json(summary, Path(folder) / "summary.json")
