"""Centroids and control vectors in W for the teacher's sampling step (Garbin et al. §3, step 1).

The paper samples around curated centroids and along 33 control vectors fitted from 2000 annotated
StyleGAN2 samples. Here both can be computed: centroids by k-means over mapped random z, control
vectors by regression of W on attribute labels, or (with no annotations) the principal directions of W.
Files: ``.pt`` (``{"vectors": [K, 512], "names": [...]}``) or ``.npy`` (the array only).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from render2style.pretrained import load_torch_file
from render2style.teacher.common import seeded_generator
from render2style.utils.io import atomic_save_npy, atomic_torch_save


@torch.no_grad()
def sample_w(G, n_samples: int, seed: int = 0, device: str | torch.device = "cpu",
             batch_size: int = 4096) -> torch.Tensor:
    """Map ``n_samples`` seeded random z through ``G``'s mapping network: ``[n_samples, style_dim]`` on CPU."""
    z = torch.randn(n_samples, G.style_dim, generator=seeded_generator(seed, "priors"))
    return torch.cat([G.style(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)])


def _kmeans_pp_init(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    centers = [x[torch.randint(len(x), (1,), generator=gen)].squeeze(0)]
    dist = torch.cdist(x, centers[0][None]).squeeze(1) ** 2
    for _ in range(1, k):
        idx = torch.multinomial(dist / dist.sum(), 1, generator=gen)
        centers.append(x[idx].squeeze(0))
        dist = torch.minimum(dist, torch.cdist(x, centers[-1][None]).squeeze(1) ** 2)
    return torch.stack(centers)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-4) -> torch.Tensor:
    """Lloyd's k-means with k-means++ initialisation; deterministic for a seed. Returns ``[k, D]``.

    Stops when the assignment is stable, no center moves more than ``tol`` × the data's RMS spread,
    or after ``max_iter`` iterations.
    """
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means: need 1 <= k <= number of samples ({len(x)}), got k={k}")
    x = x.double()
    gen = torch.Generator().manual_seed(seed)
    centers = _kmeans_pp_init(x, k, gen)
    scale = (x - x.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt()
    sq_norms = x.pow(2).sum(dim=1, keepdim=True)
    assign = None
    for _ in range(max_iter):
        new_assign = (sq_norms - 2 * x @ centers.T + centers.pow(2).sum(dim=1)).argmin(dim=1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k).to(x.dtype)[:, None]
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        # an empty cluster keeps its previous center
        new_centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
        shift = (new_centers - centers).norm(dim=1).max()
        centers = new_centers
        if shift <= tol * scale:
            break
    return centers.float()


def compute_centroids(G, k: int = 8, n_samples: int = 10000, seed: int = 0,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """k-means centroids of mapped random z: ``[k, style_dim]``; an automatic stand-in for curated centroids."""
    return kmeans(sample_w(G, n_samples, seed, device), k, seed=seed)


def pca_directions(G, n: int = 33, n_samples: int = 10000, seed: int = 0,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """The first ``n`` principal directions of mapped W (unit, orthonormal, sign-fixed): ``[n, style_dim]``.

    The unsupervised fallback for control vectors when no labelled samples exist.
    """
    w = sample_w(G, n_samples, seed, device).double()
    if not 1 <= n <= min(w.shape):
        raise ValueError(f"pca_directions: need 1 <= n <= min(n_samples, style_dim) = {min(w.shape)}, got {n}")
    _, _, vh = torch.linalg.svd(w - w.mean(dim=0), full_matrices=False)
    dirs = vh[:n]
    # SVD signs are arbitrary: make the largest-magnitude component of each direction positive.
    sign = torch.sign(dirs.gather(1, dirs.abs().argmax(dim=1, keepdim=True)))
    return (dirs * sign).float()


def _normalise(v: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
    norms = v.norm(dim=1, keepdim=True)
    for i in torch.nonzero(norms.squeeze(1) == 0).flatten().tolist():
        label = names[i] if names else str(i)
        raise ValueError(f"attribute {label!r}: fitted direction is zero (the attribute does not vary?)")
    return v / norms


def fit_directions(latents: torch.Tensor, labels: torch.Tensor, method: str = "lstsq",
                   names: Sequence[str] | None = None) -> torch.Tensor:
    """Unit directions in W, one per attribute: ``latents [N, D]``, ``labels [N, A]`` -> ``[A, D]``.

    ``lstsq``: least-squares regression W ≈ b + labels · V (with intercept); row a of V is attribute
    a's direction with the others held fixed. ``mean_diff``: mean W of label 1 minus mean W of label 0
    (binary labels only).
    """
    latents, labels = torch.as_tensor(latents).double(), torch.as_tensor(labels).double()
    if labels.ndim == 1:
        labels = labels[:, None]
    if latents.ndim != 2 or labels.ndim != 2 or len(latents) != len(labels):
        raise ValueError(f"fit_directions: expected latents [N, D] and labels [N, A], "
                         f"got {tuple(latents.shape)} and {tuple(labels.shape)}")
    if method == "lstsq":
        design = torch.cat([labels, torch.ones(len(labels), 1, dtype=labels.dtype)], dim=1)
        if len(design) < design.shape[1]:
            raise ValueError(f"fit_directions: lstsq needs at least {design.shape[1]} samples, got {len(design)}")
        dirs = torch.linalg.lstsq(design, latents).solution[:-1]
    elif method == "mean_diff":
        rows = []
        for a in range(labels.shape[1]):
            col, label = labels[:, a], names[a] if names else str(a)
            if not torch.all((col == 0) | (col == 1)):
                raise ValueError(f"attribute {label!r}: mean_diff needs binary 0/1 labels, got values "
                                 f"{sorted(set(col.tolist()))[:5]}")
            if col.sum() == 0 or col.sum() == len(col):
                raise ValueError(f"attribute {label!r}: mean_diff needs samples of both classes 0 and 1")
            rows.append(latents[col == 1].mean(dim=0) - latents[col == 0].mean(dim=0))
        dirs = torch.stack(rows)
    else:
        raise ValueError(f"fit_directions: unknown method {method!r} (expected 'lstsq' or 'mean_diff')")
    return _normalise(dirs, names).float()


def save_vectors(path: str | os.PathLike, vectors: torch.Tensor, names: Sequence[str] | None = None) -> None:
    """Write ``[K, D]`` vectors atomically: ``.pt`` keeps the names, ``.npy`` only the array."""
    vectors = torch.as_tensor(vectors).detach().float().cpu()
    if vectors.ndim != 2:
        raise ValueError(f"{path}: expected vectors [K, D], got shape {tuple(vectors.shape)}")
    names = list(names) if names is not None else [str(i) for i in range(len(vectors))]
    if len(names) != len(vectors):
        raise ValueError(f"{path}: {len(names)} names for {len(vectors)} vectors")
    suffix = Path(path).suffix.lower()
    if suffix == ".pt":
        atomic_torch_save({"vectors": vectors, "names": names}, path)
    elif suffix == ".npy":
        atomic_save_npy(vectors.numpy(), path)
    else:
        raise ValueError(f"{path}: unsupported vectors file type {suffix!r} (use .pt or .npy)")


def load_vectors(path: str | os.PathLike, style_dim: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Read ``(vectors [K, D] float32, names)`` from a ``.pt`` or ``.npy`` file; check ``D == style_dim``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such vectors file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: expected a float array [K, D] in .npy format; found a file numpy cannot "
                             f"read without running pickled code, or a truncated one ({e})") from None
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{path}: expected a float array [K, D]; found dtype {array.dtype}")
        vectors, names = torch.from_numpy(array), None
    elif path.suffix.lower() == ".pt":
        data = load_torch_file(path, "a dict {'vectors': [K, D], 'names': [...]}")
        if not isinstance(data, dict) or "vectors" not in data:
            raise ValueError(f"{path}: expected a dict with key 'vectors' (and 'names'), "
                             f"got {type(data).__name__}")
        vectors, names = torch.as_tensor(data["vectors"]), data.get("names")
    else:
        raise ValueError(f"{path}: unsupported vectors file type {path.suffix!r} (use .pt or .npy)")
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2:
        raise ValueError(f"{path}: expected vectors [K, D], got shape {tuple(vectors.shape)}")
    if style_dim is not None and vectors.shape[1] != style_dim:
        raise ValueError(f"{path}: vectors have dimension {vectors.shape[1]}, "
                         f"the generator's style_dim is {style_dim}")
    names = list(names) if names is not None else [str(i) for i in range(len(vectors))]
    if len(names) != len(vectors):
        raise ValueError(f"{path}: {len(names)} names for {len(vectors)} vectors")
    return vectors.float(), names
