"""Regenerate the README's figures from the outputs of the pipeline (every path is an argument).

Figures: ``masks`` (a render and its masks: face mask | teacher loss mask Ia, the x^10 falloff around
face ∪ hair | hair mask), ``pipeline`` (render | teacher image G(w*) | encoder output G(E(x)) | style-mixing
variants) and ``alignment`` (FFHQ alignment and paste-back: original + crop square | aligned | generated |
pasted back).
Each figure is a grid of ``--tile``² tiles under a row of column titles, saved as an RGB PNG.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from render2style.cli import add_tool_info
from render2style.utils.io import atomic_save_image, open_image, to_rgb_uint8

if TYPE_CHECKING:           # the datasets, masks and alignment (torch, OpenCV) load when a figure is made
    from render2style.alignment.ffhq import AlignTransform

log = logging.getLogger("render2style.make_figures")

TITLE_HEIGHT = 18
GAP = 2


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _tile(image: np.ndarray | Image.Image, tile: int) -> Image.Image:
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    return img.convert("RGB").resize((tile, tile), Image.LANCZOS)


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8), "L")


def _read(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image (is the folder the right stage's output?)")
    return Image.fromarray(to_rgb_uint8(open_image(path), path))


def grid(rows: Sequence[Sequence[Image.Image]], titles: Sequence[str], tile: int) -> Image.Image:
    """Tiles in rows under one title per column; white background, ``GAP`` pixels between tiles."""
    cols = len(titles)
    if any(len(r) != cols for r in rows):
        raise ValueError(f"every row needs {cols} images (one per title)")
    width, height = cols * tile + (cols - 1) * GAP, TITLE_HEIGHT + len(rows) * (tile + GAP) - GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(canvas), _font()
    for c, title in enumerate(titles):
        x = c * (tile + GAP)
        w = draw.textlength(title, font=font)
        draw.text((x + max(0, (tile - w) / 2), 2), title, fill="black", font=font)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas.paste(_tile(img, tile), (c * (tile + GAP), TITLE_HEIGHT + r * (tile + GAP)))
    return canvas


def masks_figure(args) -> Image.Image:
    from render2style.datasets import build_render_source
    from render2style.teacher.masks import loss_mask
    source = build_render_source(args.dataset, args.renders)
    rows = []
    for rid in args.ids:
        r = source[source.position(rid)]
        ia = loss_mask(r.face_mask, r.hair_mask, include_hair=True, power=args.power)
        hair = r.hair_mask if r.hair_mask is not None else np.zeros_like(r.face_mask)
        rows.append([Image.fromarray(r.rgb), _mask_image(r.face_mask), _mask_image(ia), _mask_image(hair)])
    return grid(rows, ["render", "face mask", f"Ia (x^{args.power:g})", "hair mask"], args.tile)


def pipeline_figure(args) -> Image.Image:
    from render2style.datasets import build_render_source
    source = build_render_source(args.dataset, args.renders)
    targets, encoded = Path(args.targets), Path(args.encoded)
    rows = []
    for rid in args.ids:
        row = [Image.fromarray(source[source.position(rid)].rgb), _read(targets / "images" / f"{rid}.png"),
               _read(encoded / "images" / f"{rid}.png")]
        row += [_read(encoded / "variants" / f"{rid}_v{k}.png") for k in range(args.n_variants)]
        rows.append(row)
    titles = ["render", "teacher", "encoder"] + [f"mix {k + 1}" for k in range(args.n_variants)]
    return grid(rows, titles, args.tile)


def _view_box(transform: AlignTransform, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square region of the original around the crop's quad (with a margin), inside the image."""
    quad = np.asarray(transform.quad)
    side = min(int(np.ceil(np.ptp(quad, axis=0).max())) + max(size) // 8, *size)
    cx, cy = quad.mean(axis=0)
    x0 = int(np.clip(cx - side / 2, 0, size[0] - side))
    y0 = int(np.clip(cy - side / 2, 0, size[1] - side))
    return x0, y0, x0 + side, y0 + side


def _original_with_quad(transform: AlignTransform) -> Image.Image:
    img = _read(Path(transform.source))
    quad = [tuple(p) for p in transform.quad]
    ImageDraw.Draw(img).line(quad + quad[:1], fill=(255, 40, 40), width=max(2, img.width // 100))
    return img.crop(_view_box(transform, img.size))


def alignment_figure(args) -> Image.Image:
    from render2style.alignment.ffhq import AlignTransform
    rows = []
    for aligned, encoded, name in args.rows:
        aligned, encoded = Path(aligned), Path(encoded)
        t = AlignTransform.load(aligned / "transforms" / f"{name}.json")
        pasted = _read(encoded / "paste_back" / f"{name}.png")
        rows.append([_original_with_quad(t), _read(aligned / f"{name}.png"), _read(encoded / "images" / f"{name}.png"),
                     pasted.crop(_view_box(t, pasted.size))])
    return grid(rows, ["original + crop", "aligned", "generated", "pasted back"], args.tile)


FIGURES = {"masks": masks_figure, "pipeline": pipeline_figure, "alignment": alignment_figure}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-make-figures", "render2style.scripts.make_figures", [
        "r2s-make-figures masks --dataset facesynthetics --renders FS/ --ids 000001,000003 \\\n"
        "--out docs/figures/masks.png",
        "r2s-make-figures pipeline --renders experiments/demo/demo_data/renders \\\n"
        "--targets experiments/demo/demo_data/targets --encoded experiments/demo/encoded \\\n"
        "--ids demo_00000,demo_00001 --out docs/figures/pipeline.png",
        "r2s-make-figures alignment --row aligned/ encoded_aligned/ 000000 \\\n"
        "--row aligned_photos/ encoded_photos/ 005735 --out docs/figures/alignment.png"])
    sub = p.add_subparsers(dest="figure", required=True, help="the figure to make")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="output PNG")
    common.add_argument("--tile", type=int, default=128, help="side of each tile in pixels")
    with_ids = argparse.ArgumentParser(add_help=False, parents=[common])
    with_ids.add_argument("--ids", required=True, type=lambda s: [x for x in s.split(",") if x],
                          help="comma-separated render ids, one row each")
    m = sub.add_parser("masks", parents=[with_ids], help="a render and its masks")
    m.add_argument("--renders", required=True)
    m.add_argument("--dataset", default="facesynthetics", help="render source name (facesynthetics | renders | ...)")
    m.add_argument("--power", type=float, default=10.0, help="falloff exponent of Ia (Garbin et al.: 10)")
    q = sub.add_parser("pipeline", parents=[with_ids], help="render | teacher | encoder | variants")
    q.add_argument("--renders", required=True)
    q.add_argument("--dataset", default="renders")
    q.add_argument("--targets", required=True, help="teacher target folder (images/<id>.png)")
    q.add_argument("--encoded", required=True, help="encode.py output (images/, variants/)")
    q.add_argument("--n_variants", type=int, default=3)
    a = sub.add_parser("alignment", parents=[common], help="original | aligned | generated | pasted back")
    a.add_argument("--row", dest="rows", action="append", required=True, nargs=3,
                   metavar=("ALIGNED", "ENCODED", "NAME"),
                   help="one row: align_faces.py output (<name>.png, transforms/), encode.py --paste_back "
                        "output (images/, paste_back/) and the image name (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    figure = FIGURES[args.figure](args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_image(figure, out)
    log.info("%s figure: %dx%d, %d bytes -> %s", args.figure, *figure.size, out.stat().st_size, out)
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
