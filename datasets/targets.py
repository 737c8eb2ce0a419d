"""Reader of the teacher's target folder (layout in docs/ARCHITECTURE.md, "Target folder").

An id has a target iff its ``meta/<id>.json``, ``latents/<id>.npy`` and ``images/<id>.png`` all exist (the
job writes the meta last and checks the three agree before it counts an item as finished).
Flipped-render targets use the id ``<id>_flip``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from render2style.datasets.renders import read_rgb

STYLE_DIM = 512


def load_latent(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A W+ code ``[n_latent, 512]`` from a ``.npy`` (no pickles); errors name the file and what was found."""
    try:
        arr = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: latent file missing") from None
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: expected a float W+ code [n_latent, {STYLE_DIM}] in .npy format; found a file "
                         f"numpy cannot read without running pickled code, or a truncated one ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != STYLE_DIM or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path}: expected a float W+ code [n_latent, {STYLE_DIM}], found {arr.dtype} "
                         f"of shape {list(arr.shape)}")
    return arr


class TargetFolder:
    """Finished targets of a teacher run: W+ codes ``[n_latent, 512]`` and teacher images."""

    def __init__(self, root: str | os.PathLike, n_latent: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such target folder")
        self.finished_ids = (self._stems("meta", "*.json") & self._stems("latents", "*.npy")
                             & self._stems("images", "*.png"))
        self.n_latent = self._check_n_latent(n_latent)

    def _stems(self, sub: str, pattern: str) -> set[str]:
        return {p.stem for p in (self.root / sub).glob(pattern)}

    def _check_n_latent(self, n_latent: int | None) -> int | None:
        run = self.root / "run.json"
        found, source = None, None
        if run.is_file():
            try:
                found, source = json.loads(run.read_text()).get("n_latent"), run
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{run}: not readable JSON ({e})") from e
        if found is None and self.finished_ids:
            source = self.root / "latents" / f"{min(self.finished_ids)}.npy"
            found = load_latent(source, mmap_mode="r").shape[0]
        if n_latent is not None and found is not None and int(found) != n_latent:
            raise ValueError(f"{source}: targets have n_latent {found}, expected {n_latent} "
                             f"(targets made with another generator?)")
        return n_latent if found is None else int(found)

    def finished(self, render_id: str) -> bool:
        return render_id in self.finished_ids

    def latent(self, render_id: str) -> np.ndarray:
        """float32 ``[n_latent, 512]``."""
        path = self.root / "latents" / f"{render_id}.npy"
        arr = load_latent(path)
        if self.n_latent is not None and arr.shape[0] != self.n_latent:
            raise ValueError(f"{path}: expected {self.n_latent} latents, got {arr.shape[0]}")
        return arr.astype(np.float32)

    def image(self, render_id: str) -> np.ndarray:
        """The teacher image G(w*) as uint8 ``[H, W, 3]``."""
        return read_rgb(self.root / "images" / f"{render_id}.png")
