"""Training checkpoints: pSp's layout plus the state an exact resume needs.

``checkpoints/latest.pt`` and ``checkpoints/best_model.pt`` hold ``state_dict`` (``encoder.*``,
``decoder.*``), ``opts`` (a plain dict) and ``latent_avg`` — what pSp-family tools and ``encode.py``
read — plus ``step`` and ``best_val_loss``. ``latest.pt`` also holds, under ``resume``: ``step``,
``epoch``, ``batch_in_epoch``, ``optimizer``, ``scaler``, ``best_val_loss``, ``world_size`` and the RNG
states (python, numpy, torch, cuda). Every file is written atomically and loads with ``weights_only=True``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from render2style.pretrained import load_torch_file
from render2style.utils.io import atomic_torch_save

LATEST = "latest.pt"
BEST = "best_model.pt"


def rng_state() -> dict[str, Any]:
    """The global RNG states, as types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (CUDA states only when the device count matches)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | os.PathLike, model_dict: dict[str, Any], resume: dict[str, Any] | None) -> None:
    """Atomically write pSp's ``{'state_dict', 'opts', 'latent_avg'}`` plus ``resume`` when given."""
    ckpt = dict(model_dict)
    if resume is not None:
        ckpt["resume"] = resume
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    return load_torch_file(path, "a render2style/pSp training checkpoint")


def find_resume(exp_dir: str | os.PathLike, resume: str | None) -> Path | None:
    """``--resume`` when given, else ``<exp_dir>/checkpoints/latest.pt`` when it exists."""
    if resume:
        if not Path(resume).is_file():
            raise FileNotFoundError(f"--resume {resume}: no such checkpoint")
        return Path(resume)
    latest = Path(exp_dir) / "checkpoints" / LATEST
    return latest if latest.is_file() else None
