"""Face rate and 68-landmark error of image folders against the renders they came from, per split.

    r2s-face-figures --renders aligned --heldout_from 40 \
        --images teacher=targets/images --images encoder=encoded_train --images encoder=encoded_heldout \
        --seconds teacher=targets/meta --out face_figures.json

Images are ``<render id>.png`` (a folder's ``images/`` subfolder when it has one); renders with an id number
``>= --heldout_from`` form the held-out split, the others the training split. A ``renders_64`` row scores the
renders themselves at 64² (the floor a 64² generator can reach). Figures: ``evaluation.face_figures``.
"""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

from render2style.cli import add_tool_info


def labelled(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=FOLDER, got {text!r}")
    return label, Path(folder)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-face-figures", "render2style.scripts.face_figures", [
        "r2s-face-figures --renders aligned --heldout_from 40 --images teacher=targets/images \\\n"
        "--images encoder=encoded_train --images encoder=encoded_heldout --seconds teacher=targets/meta "
        "--out face_figures.json"])
    p.add_argument("--renders", required=True, help="render folder with landmark annotations (annotations.json)")
    p.add_argument("--dataset", default="renders", help="render source of --renders (default: renders)")
    p.add_argument("--heldout_from", type=int, required=True, help="ids numbered from this on are held out")
    p.add_argument("--images", type=labelled, action="append", default=[], metavar="LABEL=FOLDER",
                   help="images named by render id (repeatable; a label may name several folders)")
    p.add_argument("--seconds", type=labelled, action="append", default=[], metavar="LABEL=META_FOLDER",
                   help="a teacher's meta/*.json folder: the median of their 'seconds' is reported")
    p.add_argument("--out", required=True, help="JSON file to write")
    return p


def id_number(render_id: str, root: str) -> int:
    """The number a render id ends with (``000041`` -> 41, ``demo_00007`` -> 7), for the split."""
    digits = re.search(r"(\d+)$", render_id)
    if digits is None:
        raise ValueError(f"{root}: render id {render_id!r} does not end with a number; --heldout_from splits by it")
    return int(digits.group(1))


def read_images(folders: Sequence[Path], ids: Sequence[str]) -> dict:
    import numpy as np
    from PIL import Image
    out = {}
    for folder in folders:
        folder = folder / "images" if (folder / "images").is_dir() else folder
        out.update({r: np.asarray(Image.open(folder / f"{r}.png").convert("RGB")) for r in ids
                    if (folder / f"{r}.png").is_file()})
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [str(folder) for _, folder in args.images + args.seconds if not folder.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    import numpy as np
    from PIL import Image

    from render2style.alignment.landmarks import DlibLandmarks
    from render2style.datasets import build_render_source
    from render2style.evaluation.face_figures import face_figures
    from render2style.utils.io import atomic_write_json

    source = build_render_source(args.dataset, args.renders)
    renders = {rid: source[i] for i, rid in enumerate(source.ids)}
    number = {r: id_number(r, args.renders) for r in renders}
    splits = {"train": [r for r in renders if number[r] < args.heldout_from],
              "heldout": [r for r in renders if number[r] >= args.heldout_from]}
    folders: dict[str, list[Path]] = {}
    for label, folder in args.images:
        folders.setdefault(label, []).append(folder)
    dlib = DlibLandmarks()
    report = {}
    for split, ids in splits.items():
        small = {r: np.asarray(Image.fromarray(renders[r].rgb).resize((64, 64), Image.Resampling.BOX)) for r in ids}
        report[f"renders_64_{split}"] = face_figures(small, renders, landmarks=dlib)
        for label, dirs in folders.items():
            report[f"{label}_{split}"] = face_figures(read_images(dirs, ids), renders, landmarks=dlib)
    for label, meta in args.seconds:
        seconds = [json.loads(p.read_text()).get("seconds") for p in meta.glob("*.json")]
        seconds = [s for s in seconds if s is not None]
        report[f"{label}_seconds_per_image_median"] = float(np.median(seconds)) if seconds else None
    atomic_write_json(report, args.out)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
