"""Face landmarks for alignment and evaluation: dlib (68 points), MTCNN (5 points), or annotations.

dlib's models come from the ``face_recognition_models`` package; its ``__init__`` needs
``pkg_resources``, so the files are located with ``importlib.util.find_spec`` instead of imported.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from render2style.pretrained import MissingWeightsError

DLIB_HINT = "pip install dlib-bin face_recognition_models (or pass the .dat file explicitly)"


def face_recognition_model_file(name: str) -> Path:
    """Path of a model file shipped in ``face_recognition_models`` (e.g. shape_predictor_68_face_landmarks.dat)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingWeightsError(f"{name}: the face_recognition_models package is not installed; {DLIB_HINT}")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise MissingWeightsError(f"{path}: not found in face_recognition_models; {DLIB_HINT}")
    return path


class DlibLandmarks:
    """dlib's HOG frontal face detector + 68-point shape predictor. ``__call__(rgb)`` -> list of [68, 2]
    float32 landmark arrays, largest face first (empty when no face is found)."""

    name = "dlib"

    def __init__(self, predictor_path: str | os.PathLike | None = None, upsample: int = 1):
        import dlib

        path = Path(predictor_path) if predictor_path else face_recognition_model_file(
            "shape_predictor_68_face_landmarks.dat")
        if not path.is_file():
            raise MissingWeightsError(f"{path}: dlib 68-point shape predictor not found; {DLIB_HINT}")
        self.detector = dlib.get_frontal_face_detector()
        try:
            self.predictor = dlib.shape_predictor(str(path))
        except RuntimeError as e:
            raise ValueError(f"{path}: expected dlib's 68-point shape predictor "
                             f"(shape_predictor_68_face_landmarks.dat); dlib cannot read it ({e}); {DLIB_HINT}") from e
        self.upsample = upsample

    def detect(self, rgb: np.ndarray):
        """dlib rectangles, largest first."""
        rects = self.detector(np.ascontiguousarray(rgb[..., :3]), self.upsample)
        return sorted(rects, key=lambda r: -r.area())

    def shape(self, rgb: np.ndarray, rect) -> np.ndarray:
        s = self.predictor(np.ascontiguousarray(rgb[..., :3]), rect)
        return np.array([[p.x, p.y] for p in s.parts()], dtype=np.float32)

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        return [self.shape(rgb, r) for r in self.detect(rgb)]


class MTCNNPoints:
    """MTCNN (facenet-pytorch, weights bundled) -> list of [5, 2] points (eyes, nose, mouth corners),
    most confident face first."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu", min_prob: float = 0.9):
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device=device)
        self.min_prob = min_prob

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        from PIL import Image

        boxes, probs, points = self.mtcnn.detect(Image.fromarray(np.ascontiguousarray(rgb[..., :3])), landmarks=True)
        if boxes is None:
            return []
        order = np.argsort(-probs)
        return [points[i].astype(np.float32) for i in order if probs[i] >= self.min_prob]


def annotation_landmarks(image_path: str | os.PathLike) -> np.ndarray | None:
    """68 landmarks [68, 2] for a render from its annotation file, or None when there is none.

    Looks for Face Synthetics' ``<stem>_ldmks.txt`` (70 rows "x y": iBUG 68 + 2 pupils) and the demo
    renders' ``annotations.json`` in the same folder (keyed by id or file name, field ``landmarks``).
    """
    path = Path(image_path)
    txt = path.with_name(f"{path.stem}_ldmks.txt")
    if txt.is_file():
        lm = np.loadtxt(txt, dtype=np.float32).reshape(-1, 2)
        if lm.shape[0] < 68:
            raise ValueError(f"{txt}: expected at least 68 landmark rows, got {lm.shape[0]}")
        return lm[:68]
    ann = path.with_name("annotations.json")
    if ann.is_file():
        entry = _find_entry(json.loads(ann.read_text()), path)
        if entry is not None and entry.get("landmarks") is not None:
            lm = np.asarray(entry["landmarks"], dtype=np.float32).reshape(-1, 2)
            if lm.shape[0] != 68:
                raise ValueError(f"{ann}: {path.name}: expected 68 landmarks, got {lm.shape[0]}")
            return lm
    return None


def _find_entry(data, path: Path) -> dict | None:
    if isinstance(data, dict) and isinstance(data.get("images"), (list, dict)):
        data = data["images"]
    if isinstance(data, dict):
        return data.get(path.stem) or data.get(path.name)
    if isinstance(data, list):
        for entry in data:
            if isinstance(entry, dict) and path.stem in (entry.get("id"), Path(str(entry.get("file", ""))).stem):
                return entry
    return None
