"""Align faces to FFHQ framing and save each transform (for paste-back after encoding).

    python -m render2style.scripts.align_faces --input photos/ --out aligned/ [--detector dlib|mtcnn]
    python -m render2style.scripts.align_faces --input renders/ --out aligned/ --output_size 256

Landmarks: ``auto`` uses a render's annotation file when there is one (Face Synthetics ``_ldmks.txt``,
demo ``annotations.json``) and dlib's 68-point predictor otherwise; ``mtcnn`` uses MTCNN's 5 points.
Writes ``<out>/<name>.png`` (RGBA renders keep their alpha mask, warped alike) and
``<out>/transforms/<name>.json``; a file with no detectable face gets a message and is skipped.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from render2style.alignment.ffhq import align_face, points_from_5, points_from_68
from render2style.alignment.landmarks import DlibLandmarks, MTCNNPoints, annotation_landmarks
from render2style.inference.inputs import DEFAULT_EXCLUDE, list_images
from render2style.utils.io import atomic_save_image, open_image, to_rgb_uint8

log = logging.getLogger("render2style.align_faces")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="an image, a folder or a glob pattern")
    p.add_argument("--out", required=True, help="output folder (aligned images + transforms/)")
    p.add_argument("--detector", choices=["auto", "annotations", "dlib", "mtcnn"], default="auto")
    p.add_argument("--output_size", type=int, default=1024, help="side of the aligned crops (FFHQ: 1024)")
    p.add_argument("--predictor", default=None,
                   help="dlib shape_predictor_68_face_landmarks.dat (default: from face_recognition_models)")
    p.add_argument("--device", default="cpu", help="device of MTCNN")
    return p.parse_args(argv)


def _load(path: Path) -> np.ndarray:
    """uint8 RGB, or RGBA when the file has an alpha channel (a render's face mask)."""
    img = open_image(path)
    rgb = to_rgb_uint8(img, path)
    if img.mode in ("RGBA", "LA", "PA"):
        return np.dstack([rgb, np.asarray(img.getchannel("A"))])
    return rgb


class Aligner:
    """Finds alignment points for an image with the chosen detector (detectors built lazily)."""

    def __init__(self, detector: str, predictor: Optional[str] = None, device: str = "cpu"):
        self.detector, self.predictor, self.device = detector, predictor, device
        self._dlib = self._mtcnn = None

    def points(self, path: Path, image: np.ndarray) -> tuple[Optional[dict], str]:
        """(alignment points or None when no face, name of the landmark source)."""
        if self.detector in ("auto", "annotations"):
            lm = annotation_landmarks(path)
            if lm is not None:
                return points_from_68(lm), "annotations"
            if self.detector == "annotations":
                return None, "annotations"
        if self.detector == "mtcnn":
            self._mtcnn = self._mtcnn or MTCNNPoints(self.device)
            faces = self._mtcnn(image)
            return (points_from_5(faces[0]) if faces else None), "mtcnn"
        self._dlib = self._dlib or DlibLandmarks(self.predictor)
        faces = self._dlib(image)
        return (points_from_68(faces[0]) if faces else None), "dlib"


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = Path(args.out)
    (out / "transforms").mkdir(parents=True, exist_ok=True)
    aligner = Aligner(args.detector, args.predictor, args.device)
    done = skipped = 0
    for path in list_images(args.input, DEFAULT_EXCLUDE):
        try:
            image = _load(path)
        except (ValueError, OSError) as e:
            log.error("%s", e)
            skipped += 1
            continue
        points, source = aligner.points(path, image)
        if points is None:
            log.warning("%s: no face found (%s); skipped", path, source)
            skipped += 1
            continue
        aligned, transform = align_face(image, points, args.output_size, source=str(path.resolve()), detector=source)
        atomic_save_image(Image.fromarray(aligned), out / f"{path.stem}.png")
        transform.save(out / "transforms" / f"{path.stem}.json")
        done += 1
    log.info("aligned %d images into %s (%d skipped)", done, out, skipped)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
