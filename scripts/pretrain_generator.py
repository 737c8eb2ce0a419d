"""Reconstruction pre-training of a StyleGAN2 generator on a folder of photos (a VAE whose decoder is G).

    r2s-pretrain-generator --data ../shared/data/utkface/faces --out runs/faces64/pretrain.pt --kimg 100

Writes the resumable pre-training checkpoint OUT every few hundred steps, then ``OUT_sampler.pt``: the EMA
generator with its mapping network set so that z ~ N(0, I) lands on the codes it learnt (rosinality layout,
``g``, ``g_ema``, ``latent_avg``; no ``d``). Sharpen it with ``r2s-train-generator --ckpt OUT_sampler.pt``.
Every 40th photo (sorted by name) is held out, and the final reconstruction error on it is reported next to the
same figure on training photos.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import fields

from render2style.cli import add_tool_info


def main(argv: list[str] | None = None) -> dict:
    from render2style.generator_training.reconstruction_config import ReconstructionConfig

    parser = argparse.ArgumentParser(description="Pre-train a StyleGAN2 generator as the decoder of a VAE "
                                                 "on photos (fast on a CPU; samples are soft until an "
                                                 "adversarial phase).")
    add_tool_info(parser, "r2s-pretrain-generator", "render2style.scripts.pretrain_generator",
                  ["r2s-pretrain-generator --data photos/ --out runs/g64/pretrain.pt --kimg 100"])
    parser.add_argument("--data", required=True, help="folder of photos (any image format)")
    parser.add_argument("--out", required=True, help="checkpoint path (resumed when it exists)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    for f in fields(ReconstructionConfig):
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default,
                            help=f"ReconstructionConfig.{f.name} (default {f.default})")
    args = parser.parse_args(argv)
    cfg = ReconstructionConfig(**{f.name: getattr(args, f.name) for f in fields(ReconstructionConfig)})

    from pathlib import Path

    import torch

    from render2style.datasets.photos import load_photo_array
    from render2style.generator_training.reconstruction import (
        export_sampler,
        split_indices,
        train_reconstruction,
    )
    from render2style.utils.io import atomic_write_json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    photos, _ = load_photo_array(args.data, cfg.size, cache=out.parent / f"photos_{cfg.size}.npy")
    train_idx, held_idx = split_indices(len(photos))
    train = torch.from_numpy(photos[train_idx])
    figures = train_reconstruction(train, torch.from_numpy(photos[held_idx]), cfg, out)
    sampler = out.with_name(out.stem + "_sampler.pt")
    figures.update(export_sampler(out, train, sampler, seed=cfg.seed))
    logging.getLogger(__name__).info("wrote the sampler generator %s", sampler)
    figures.update(n_train=len(train_idx), n_held_out=len(held_idx))
    atomic_write_json(figures, out.with_suffix(".json"))
    return figures


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
