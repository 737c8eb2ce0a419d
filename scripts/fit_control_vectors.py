"""Fit control vectors (and optionally centroids) in W for the teacher's sampling step.

Supervised: a CSV with a ``seed`` column (z = ``np.random.RandomState(seed).randn(512)``, the official
StyleGAN convention) or a ``latent`` column (path to an ``.npy`` W ``[512]`` or W+ ``[n_latent, 512]``,
relative to the CSV's folder; W+ is reduced to its mean over layers), then one column per attribute.
Unsupervised fallback (no annotations): ``--unsupervised 33`` takes the principal directions of W.
"""
from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.cli import add_tool_info

if TYPE_CHECKING:  # torch loads after the options are parsed (a fast --help)
    import torch

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-fit-control-vectors", "render2style.scripts.fit_control_vectors", [
        "r2s-fit-control-vectors --stylegan_weights stylegan2-ffhq-config-f.pt --labels labels.csv --method lstsq \\\n"
        "--out control_vectors.pt --centroids 8      # also writes control_vectors_centroids.pt",
        "r2s-fit-control-vectors --stylegan_weights stylegan2-ffhq-config-f.pt --unsupervised 33 --centroids 8 \\\n"
        "--out cv_pca.pt"])
    p.add_argument("--stylegan_weights", default="demo",
                   help="StyleGAN2 checkpoint (rosinality layout), or 'demo' (the demo face generator) / "
                        "'demo-random' (the seeded random one)")
    p.add_argument("--labels", help="CSV: 'seed' or 'latent' column, then attribute columns")
    p.add_argument("--method", choices=("lstsq", "mean_diff"), default="lstsq",
                   help="least-squares regression of W on the attributes, or class-mean difference (0/1 labels)")
    p.add_argument("--unsupervised", type=int, metavar="N",
                   help="without --labels: the first N principal directions of mapped W")
    p.add_argument("--centroids", type=int, metavar="K", help="also write K k-means centroids of mapped W")
    p.add_argument("--centroids_out", help="centroids file (default: <out stem>_centroids<suffix>)")
    p.add_argument("--n_samples", type=int, default=10000, help="mapped z samples for PCA / k-means")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled z (PCA, k-means)")
    p.add_argument("--device", default="cpu", help="device of the generator's mapping network")
    p.add_argument("--out", required=True, help="output file (.pt keeps the attribute names, or .npy)")
    return p


def load_generator_arg(weights: str, device: str):
    from render2style.options.demo_names import demo_kind
    from render2style.stylegan2 import load_demo, load_generator
    kind = demo_kind(weights)
    if kind is not None:
        log.warning("using the %s DEMO generator: vectors only fit the demo world", weights)
        return load_demo(kind, device=device)[0]
    return load_generator(weights, device=device)[0]


def read_labels(path: str | Path, G, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """CSV -> (W latents [N, style_dim], labels [N, A], attribute names)."""
    import numpy as np
    import torch
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    columns = list(rows[0])
    key = "seed" if "seed" in columns else "latent" if "latent" in columns else None
    if key is None:
        raise ValueError(f"{path}: needs a 'seed' or a 'latent' column, found {columns}")
    names = [c for c in columns if c not in ("seed", "latent")]
    if not names:
        raise ValueError(f"{path}: no attribute columns besides {key!r}")
    try:
        labels = torch.tensor([[float(r[c]) for c in names] for r in rows])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: attribute values must be numbers ({e})") from e
    if key == "seed":
        z = np.stack([np.random.RandomState(int(r["seed"])).randn(G.style_dim) for r in rows])
        with torch.no_grad():
            latents = G.style(torch.from_numpy(z).float().to(device)).cpu()
    else:
        latents = torch.stack([_read_latent(path.parent / r["latent"], G.style_dim) for r in rows])
    return latents, labels, names


def _read_latent(path: Path, style_dim: int) -> torch.Tensor:
    import numpy as np
    import torch
    if not path.is_file():
        raise FileNotFoundError(f"{path}: latent file not found (paths are relative to the CSV's folder)")
    w = np.load(path, allow_pickle=False)
    if w.ndim not in (1, 2) or w.shape[-1] != style_dim:
        raise ValueError(f"{path}: expected a W [{style_dim}] or W+ [n_latent, {style_dim}] latent, "
                         f"got shape {w.shape}")
    return torch.from_numpy(w).float().reshape(-1, style_dim).mean(dim=0)


def default_centroids_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_centroids{out.suffix}")


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if bool(args.labels) == bool(args.unsupervised):
        raise SystemExit("give exactly one of --labels CSV or --unsupervised N")
    from render2style.teacher.control_vectors import compute_centroids, fit_directions, pca_directions, save_vectors
    G = load_generator_arg(args.stylegan_weights, args.device)
    if args.labels:
        latents, labels, names = read_labels(args.labels, G, args.device)
        vectors = fit_directions(latents, labels, args.method, names=names)
        log.info("fitted %d control vectors (%s) from %d labelled samples", len(names), args.method, len(latents))
    else:
        vectors = pca_directions(G, args.unsupervised, args.n_samples, args.seed, args.device)
        names = [f"pc{i:02d}" for i in range(len(vectors))]
        log.info("unsupervised: %d principal directions of W from %d samples", len(names), args.n_samples)
    save_vectors(args.out, vectors, names)
    written = {"control_vectors": str(args.out)}
    if args.centroids:
        centroids = compute_centroids(G, args.centroids, args.n_samples, args.seed, args.device)
        path = Path(args.centroids_out) if args.centroids_out else default_centroids_path(args.out)
        save_vectors(path, centroids, [f"centroid{i:02d}" for i in range(len(centroids))])
        written["centroids"] = str(path)
    log.info("wrote %s", ", ".join(written.values()))
    return written


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
