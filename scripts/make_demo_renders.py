"""Draw the procedural demo renders (RGBA PNG + hair mask + annotations.json) into a folder.

    r2s-make-demo-renders --out demo/renders --n 64 --seed 0 --size 256
"""
from __future__ import annotations

import argparse
import logging

from render2style.cli import add_tool_info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw deterministic procedural demo face renders "
                                                 "(shows the mechanics, not photorealism).")
    add_tool_info(parser, "r2s-make-demo-renders", "render2style.scripts.make_demo_renders",
                  ["r2s-make-demo-renders --out demo/renders --n 64 --seed 0 --size 256"])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=64, help="number of renders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural faces (same seed, same renders)")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    args = parser.parse_args(argv)
    from render2style.datasets.demo_renders import make_demo_renders
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = make_demo_renders(args.out, args.n, seed=args.seed, size=args.size)
    logging.getLogger(__name__).info("wrote %d demo renders to %s", len(paths), args.out)


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
