"""Align faces to FFHQ framing and save each transform (for paste-back after encoding).

    r2s-align-faces --input photos/ --out aligned/ [--detector dlib|mtcnn]
    r2s-align-faces --input renders/ --out aligned/ --output_size 256

Landmarks: ``auto`` uses a render's annotation file when there is one (Face Synthetics ``_ldmks.txt``,
demo ``annotations.json``) and dlib's 68-point predictor otherwise; ``mtcnn`` uses MTCNN's 5 points.
Writes ``<out>/<name>.png`` and ``<out>/transforms/<name>.json``; a file with no detectable face gets a
message and is skipped. Renders stay renders: the face mask (alpha, ``_mask.png`` or Face Synthetics'
``_seg.png``) becomes the aligned image's alpha, a hair mask is written as ``<name>_hair.png`` and 68
landmarks go, warped alike, into ``<out>/annotations.json``, so the output folder reads as
``--dataset renders`` (teacher, training) in FFHQ framing.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from render2style.cli import add_tool_info
from render2style.options.encode_options import DEFAULT_EXCLUDE

# torch, dlib and the alignment code load after the options are parsed (a fast --help).

log = logging.getLogger("render2style.align_faces")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_tool_info(p, "r2s-align-faces", "render2style.scripts.align_faces", [
        "r2s-align-faces --input photos/ --out aligned/ --output_size 256             # dlib 68 points (FFHQ recipe)",
        "r2s-align-faces --input photos/ --out aligned/ --detector mtcnn              # MTCNN's 5 points",
        "r2s-align-faces --input renders/ --out aligned/ --output_size 256            # a render's own landmarks"])
    p.add_argument("--input", required=True, help="an image, a folder or a glob pattern")
    p.add_argument("--out", required=True, help="output folder (aligned images + transforms/)")
    p.add_argument("--detector", choices=["auto", "annotations", "dlib", "mtcnn"], default="auto",
                   help="landmark source: auto = a render's own annotations when present, else dlib")
    p.add_argument("--output_size", type=int, default=1024, help="side of the aligned crops (FFHQ: 1024)")
    p.add_argument("--predictor", default=None,
                   help="dlib shape_predictor_68_face_landmarks.dat (default: from face_recognition_models)")
    p.add_argument("--device", default="cpu", help="device of MTCNN")
    return p.parse_args(argv)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 RGB, or RGBA when the image has a face mask: its alpha or a side file; uint8 hair mask or None)."""
    from render2style.datasets.masks import side_masks
    from render2style.utils.io import open_image, to_rgb_uint8

    img = open_image(path)
    rgb = np.asarray(to_rgb_uint8(img, path))
    face, hair = side_masks(path)
    for name, m in (("face mask", face), ("hair mask", hair)):
        if m is not None and m.shape != rgb.shape[:2]:
            raise ValueError(f"{path}: its {name} is {m.shape[1]}x{m.shape[0]}, "
                             f"the image {rgb.shape[1]}x{rgb.shape[0]}")
    to_u8 = lambda m: np.round(np.clip(m, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    if img.mode in ("RGBA", "LA", "PA"):
        rgb = np.dstack([rgb, np.asarray(img.getchannel("A"))])
    elif face is not None:
        rgb = np.dstack([rgb, to_u8(face)])
    return rgb, (None if hair is None else to_u8(hair))


def _warp_points(points: np.ndarray, matrix: list) -> list:
    m = np.asarray(matrix, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]).round(3).tolist()


class Aligner:
    """Finds alignment points for an image with the chosen detector (detectors built lazily)."""

    def __init__(self, detector: str, predictor: str | None = None, device: str = "cpu"):
        self.detector, self.predictor, self.device = detector, predictor, device
        self._dlib = self._mtcnn = None

    def landmarks(self, path: Path, image: np.ndarray) -> tuple[np.ndarray | None, str]:
        """(68 landmarks, or MTCNN's 5 points, or None when no face; name of the landmark source)."""
        from render2style.alignment.landmarks import DlibLandmarks, MTCNNPoints, annotation_landmarks

        if self.detector in ("auto", "annotations"):
            lm = annotation_landmarks(path)
            if lm is not None or self.detector == "annotations":
                return lm, "annotations"
        if self.detector == "mtcnn":
            self._mtcnn = self._mtcnn or MTCNNPoints(self.device)
            faces = self._mtcnn(image)
            return (faces[0] if faces else None), "mtcnn"
        self._dlib = self._dlib or DlibLandmarks(self.predictor)
        faces = self._dlib(image)
        return (faces[0] if faces else None), "dlib"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from render2style.alignment.ffhq import align_face, points_from_5, points_from_68, warp_antialiased
    from render2style.inference.inputs import list_images
    from render2style.utils.io import atomic_save_image, atomic_write_json

    out = Path(args.out)
    (out / "transforms").mkdir(parents=True, exist_ok=True)
    aligner = Aligner(args.detector, args.predictor, args.device)
    done = skipped = 0
    annotations = {}
    for path in list_images(args.input, DEFAULT_EXCLUDE):
        try:
            image, hair = _load(path)
        except (ValueError, OSError) as e:
            log.error("%s", e)
            skipped += 1
            continue
        lm, source = aligner.landmarks(path, image)
        if lm is None:
            log.warning("%s: no face found (%s); skipped", path, source)
            skipped += 1
            continue
        points = points_from_5(lm) if len(lm) == 5 else points_from_68(lm)
        aligned, transform = align_face(image, points, args.output_size, source=str(path.resolve()), detector=source)
        atomic_save_image(Image.fromarray(aligned), out / f"{path.stem}.png")
        if hair is not None:
            hair = warp_antialiased(hair, np.asarray(transform.matrix), args.output_size)
            atomic_save_image(Image.fromarray(hair), out / f"{path.stem}_hair.png")
        if len(lm) >= 68:
            annotations[path.stem] = {"landmarks": _warp_points(lm[:68], transform.matrix), "landmarks_source": source}
        transform.save(out / "transforms" / f"{path.stem}.json")
        done += 1
    if annotations:
        ann_path = out / "annotations.json"
        previous = json.loads(ann_path.read_text()) if ann_path.is_file() else {}
        atomic_write_json({**previous, **annotations}, ann_path)
    log.info("aligned %d images into %s (%d skipped)", done, out, skipped)
    return 0 if done else 1


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
