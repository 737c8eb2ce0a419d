"""Convert NVIDIA stylegan2-ada-pytorch ``.pkl`` weights to the rosinality ``.pt`` layout render2style and pSp load.

No NVIDIA code is needed and no pickled code runs: a restricted unpickler rebuilds only tensors.
The output holds ``g_ema`` and ``latent_avg`` (from ``mapping.w_avg``).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

from render2style.cli import add_tool_info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(parser, "r2s-convert-weights", "render2style.scripts.convert_weights",
                  ["r2s-convert-weights ffhq.pkl stylegan2-ffhq-config-f.pt"])
    parser.add_argument("pkl", help="stylegan2-ada-pytorch snapshot (.pkl) holding G_ema")
    parser.add_argument("out", help="output .pt in the rosinality layout")
    args = parser.parse_args(argv)
    from render2style.stylegan2 import convert_ada_pkl, infer_config
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ckpt = convert_ada_pkl(args.pkl, args.out)  # a missing or wrong file: one error line (cli.run_tool)
    cfg = infer_config(ckpt["g_ema"], args.out)
    print(f"wrote {args.out}: {cfg['size']}x{cfg['size']}, n_latent {2 * int(math.log2(cfg['size'])) - 2}, "
          f"latent_avg {'yes' if 'latent_avg' in ckpt else 'no'}")
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
