"""Command-line options of ``r2s-train-generator`` (``train_generator.py``).

Names follow rosinality/stylegan2-pytorch's ``train.py`` (``--ckpt``, ``--size``, ``--r1``-style weights as
``--r1_gamma``, ``--path_regularize`` as ``--pl_weight``, ``--mixing``, ``--augment``) and StyleGAN2-ADA's
(``--kimg``, ``--mirror``, ``--snapshot_kimg``, ``--ada_target``). ``--batch`` is the total batch over all
ranks (ADA's convention). A ``--preset`` fills every option not given on the command line.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from render2style.cli import add_tool_info
from render2style.options.train_options import _add_bool, str2bool
from render2style.options.validators import available_workers, float_at_least, int_at_least

#: StyleGAN2-ADA's ``stylegan2`` config (``--cfg stylegan2``: batch 32, lr 0.002, betas (0, 0.99), γ = 10 at
#: 1024², EMA half-life 10 kimg without ramp-up, mixing 0.9, path length weight 2, mapping lr ×0.01, mbstd 4).
#: γ = None means 10·(size / 1024)²: R1 scales with the number of pixels, as ADA's ``auto`` config's
#: 0.0002·size² / batch (ADA has no per-resolution rule for ``stylegan2``; this is ours, logged).
STYLEGAN2 = dict(batch=32, lr=2e-3, beta1=0.0, beta2=0.99, r1_gamma=None, ema_kimg=10.0, ema_rampup=0.0,
                 mixing_prob=0.9, pl_weight=2.0, kimg=25000.0, augment="ada", mirror=False,
                 freeze_mapping=False, freeze_torgb=False, consistency=False)
#: Wang et al. 2023 §3.2/§4.1: ADA's stylegan2 config, fine-tuning a face generator into the render domain
#: with the mapping network and the ToRGB layers frozen, x-flips, stop after D has seen 40k real images,
#: plus the identity-consistency (sketch and colour) losses against the starting generator.
WANG = {**STYLEGAN2, "freeze_mapping": True, "freeze_torgb": True, "mirror": True, "kimg": 40.0,
        "consistency": True}
PRESETS: dict[str, dict[str, Any]] = {"stylegan2": STYLEGAN2, "wang": WANG}
AUGMENTS = ("ada", "diffaugment", "none")
DEFAULT_R1_GAMMA_1024 = 10.0


def default_r1_gamma(size: int) -> float:
    """γ = 10 at 1024², scaled with the pixel count for other resolutions (0.625 at 256², 0.039 at 64²)."""
    return DEFAULT_R1_GAMMA_1024 * (size / 1024) ** 2


def _power_of_two(text: str) -> int:
    value = int_at_least(8)(text)
    if value & (value - 1) or value > 1024:
        raise argparse.ArgumentTypeError(f"expected a power of two in [8, 1024], got {value}")
    return value


def _probability(text: str) -> float:
    value = float_at_least(0.0)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value}")
    return value


def _add_preset_bool(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """``--name [BOOL]`` / ``--no-name`` whose default comes from the ``--preset``."""
    parser.add_argument(f"--{name}", type=str2bool, nargs="?", const=True, default=None, metavar="BOOL",
                        help=f"{help} (default: the preset's)")
    parser.add_argument(f"--no-{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


class GeneratorTrainOptions:
    """``GeneratorTrainOptions().parse(argv)`` -> ``argparse.Namespace``."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            description="Train a StyleGAN2 generator from scratch or fine-tune one from a rosinality checkpoint "
                        "(checkpoints in the rosinality layout: g, g_ema, d, optimizer states, latent_avg).")
        add_tool_info(self.parser, "r2s-train-generator", "render2style.train_generator", [
            "r2s-train-generator --data ../shared/data/utkface --size 64 --exp_dir runs/faces64 "
            "--channel_multiplier 1 --channel_max 128 --mirror",
            "r2s-train-generator --preset wang --ckpt stylegan2-ffhq-config-f.pt --dataset facesynthetics \\\n"
            "--data renders/ --exp_dir runs/g_rendering --lpips_backbone vgg16-397923af.pth",
            "torchrun --nproc_per_node 8 -m render2style.train_generator --data D --size 256 --exp_dir runs/g256"])
        self._initialize()

    def _initialize(self) -> None:
        p = self.parser
        g = p.add_argument_group("experiment")
        g.add_argument("--preset", choices=sorted(PRESETS), default="stylegan2",
                       help="stylegan2: StyleGAN2-ADA's stylegan2 config; wang: Wang et al. 2023's identity-"
                            "consistent fine-tuning (needs --ckpt). Options given explicitly override the preset")
        g.add_argument("--data", type=str, required=True, help="folder of training images or renders")
        g.add_argument("--dataset", type=str, default="images",
                       help="render source of --data: images | renders | facesynthetics | package.module:Class")
        g.add_argument("--exp_dir", type=str, required=True,
                       help="output folder (checkpoints/, logs/); one with checkpoints/latest.pt is resumed")
        g.add_argument("--ckpt", type=str, default=None,
                       help="rosinality checkpoint to fine-tune from (g_ema, optional g, d, latent_avg); "
                            "without 'd' a fresh discriminator is trained")
        g.add_argument("--resume", type=str, default=None,
                       help="train_generator checkpoint to continue exactly; default: <exp_dir>/checkpoints/"
                            "latest.pt if it exists")
        g.add_argument("--seed", type=int, default=0, help="seed of initialization, data order and sampling")
        g.add_argument("--device", type=str, default=None,
                       help="cpu | cuda | cuda:N; default: cuda:LOCAL_RANK when CUDA is available, else cpu")
        g.add_argument("--workers", type=int_at_least(0), default=available_workers(4),
                       help=f"dataloader workers per rank (default: {available_workers(4)}, the CPUs available "
                            "here, at most 4)")
        _add_bool(g, "skip_corrupt", False, "leave unreadable images out instead of stopping")

        g = p.add_argument_group("architecture (from scratch; --ckpt and --resume bring their own)")
        g.add_argument("--size", type=_power_of_two, default=None,
                       help="output resolution, a power of two; required without --ckpt")
        g.add_argument("--style_dim", type=int_at_least(1), default=512, help="dimension of Z and W")
        g.add_argument("--n_mlp", type=int_at_least(1), default=8, help="mapping network layers")
        g.add_argument("--channel_multiplier", type=float_at_least(0, strict=True), default=2,
                       help="2 = config-f (512 feature maps at 64²), 1 = half from 64² up")
        g.add_argument("--channel_max", type=int_at_least(1), default=512, help="cap on feature maps per layer")
        g.add_argument("--mbstd_group", type=int_at_least(1), default=4, help="minibatch-stddev group size of D")

        g = p.add_argument_group("optimization")
        g.add_argument("--batch", type=int_at_least(1), default=None, help="total batch over all ranks")
        g.add_argument("--lr", type=float_at_least(0, strict=True), default=None, help="Adam lr of G and D")
        g.add_argument("--beta1", type=_probability, default=None, help="Adam beta1")
        g.add_argument("--beta2", type=_probability, default=None, help="Adam beta2")
        g.add_argument("--kimg", type=float_at_least(0, strict=True), default=None,
                       help="stop after D has seen this many thousand real images")
        g.add_argument("--r1_gamma", type=float_at_least(0), default=None,
                       help="R1 weight γ (0 = off); default 10·(size/1024)², logged")
        g.add_argument("--r1_every", type=int_at_least(1), default=16, help="lazy R1: every N D steps")
        g.add_argument("--pl_weight", type=float_at_least(0), default=None, help="path length weight (0 = off)")
        g.add_argument("--pl_every", type=int_at_least(1), default=4, help="lazy path length: every N G steps")
        g.add_argument("--pl_decay", type=_probability, default=0.01, help="decay of the path length's mean")
        g.add_argument("--pl_batch_shrink", type=int_at_least(1), default=2, help="path length batch divisor")
        g.add_argument("--ema_kimg", type=float_at_least(0), default=None, help="G EMA half-life in kimg")
        g.add_argument("--ema_rampup", type=float_at_least(0), default=None,
                       help="EMA ramp-up: half-life at most cur_nimg·ramp-up (ADA: 0.05; 0 = off)")
        g.add_argument("--mixing_prob", type=_probability, default=None, help="style-mixing probability")
        g.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast precision")
        _add_preset_bool(g, "freeze_mapping", "keep the mapping network fixed")
        _add_preset_bool(g, "freeze_torgb", "keep the ToRGB layers fixed")

        g = p.add_argument_group("augmentation")
        g.add_argument("--augment", choices=AUGMENTS, default=None,
                       help="ada: StyleGAN2-ADA's pipeline with adaptive p; diffaugment: DiffAugment on every "
                            "image; none")
        g.add_argument("--augment_p", type=_probability, default=0.0, help="initial augmentation probability")
        g.add_argument("--ada_target", type=_probability, default=0.6, help="ADA target of E[sign(D(real))]")
        g.add_argument("--ada_interval", type=int_at_least(1), default=4, help="D steps between p updates")
        g.add_argument("--ada_kimg", type=float_at_least(0, strict=True), default=500,
                       help="ADA speed: p can go from 0 to 1 in this many kimg")
        g.add_argument("--diffaugment_policy", type=str, default="color,translation,cutout",
                       help="DiffAugment operations")
        _add_preset_bool(g, "mirror", "add the dataset's horizontal mirror images")

        g = p.add_argument_group("identity consistency (Wang et al.; on with --preset wang)")
        _add_preset_bool(g, "consistency", "sketch and colour losses against a frozen copy of the --ckpt generator")
        g.add_argument("--sketch_net", type=str, default=None,
                       help="sketch extractor (TorchScript or ONNX); default: the differentiable stand-in, logged")
        g.add_argument("--lpips_backbone", type=str, default=None, help="VGG-16 weights for the colour LPIPS")
        g.add_argument("--color_size", type=int_at_least(16), default=256,
                       help="side of the colour loss's images (the paper's 256; a small generator's own size "
                            "saves the upsampling), its Gaussian blur scaled to keep σ = 10/256 of the side")
        g.add_argument("--identity_weights", type=str, default=None,
                       help="identity network weights for the identity drift logged on fixed w")

        g = p.add_argument_group("logging and checkpoints")
        g.add_argument("--tick_kimg", type=float_at_least(0, strict=True), default=4,
                       help="kimg between log lines and TensorBoard scalars")
        g.add_argument("--snapshot_kimg", type=float_at_least(0, strict=True), default=50,
                       help="kimg between checkpoints and sample grids")
        g.add_argument("--n_samples", type=int_at_least(1), default=32, help="images in the fixed-z sample grid")
        _add_bool(g, "keep_snapshots", False, "also keep every snapshot as checkpoints/snapshot-<kimg>.pt")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv``; every option left at None takes the ``--preset`` value; checks combinations."""
        opts = self.parser.parse_args(argv)
        for key, value in PRESETS[opts.preset].items():
            if getattr(opts, key) is None:
                setattr(opts, key, value)
        if opts.ema_rampup == 0:
            opts.ema_rampup = None
        resuming = opts.resume is not None or (Path(opts.exp_dir) / "checkpoints" / "latest.pt").is_file()
        if opts.size is None and opts.ckpt is None and not resuming:
            self.parser.error("--size is required when training from scratch (no --ckpt, nothing to resume in "
                              f"{opts.exp_dir})")
        if opts.preset == "wang" and opts.ckpt is None:
            self.parser.error("--preset wang fine-tunes a generator: give its checkpoint with --ckpt")
        if opts.consistency and opts.ckpt is None:
            self.parser.error("--consistency compares with the starting generator: give it with --ckpt")
        group = min(opts.batch, opts.mbstd_group)
        if opts.batch % group:
            self.parser.error(f"--batch {opts.batch} must be a multiple of --mbstd_group {opts.mbstd_group}")
        if opts.augment == "diffaugment":
            from render2style.generator_training.augment import parse_policy
            try:
                parse_policy(opts.diffaugment_policy)
            except ValueError as e:
                self.parser.error(f"--diffaugment_policy: {e}")
        return opts
