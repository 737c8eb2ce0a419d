"""dlib's face analysis for evaluation: 68 landmarks and 128-d face-recognition descriptors.

dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1.dat``, 99.38% on LFW) is
independent of the ArcFace networks used as training losses, so it is a fair identity metric.
The model files come from ``face_recognition_models`` (located without importing it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from render2style.alignment.landmarks import DLIB_HINT, DlibLandmarks, face_recognition_model_file
from render2style.pretrained import MissingWeightsError


class DlibFace:
    """Largest-face landmarks ``[68, 2]`` and descriptors ``[128]`` (None when no face is found); dlib calls two
    faces the same person when their descriptors are less than 0.6 apart (Euclidean)."""

    def __init__(self, predictor_path: str | os.PathLike | None = None,
                 recognition_path: str | os.PathLike | None = None, upsample: int = 1):
        import dlib

        self.landmarker = DlibLandmarks(predictor_path, upsample)
        path = Path(recognition_path) if recognition_path else face_recognition_model_file(
            "dlib_face_recognition_resnet_model_v1.dat")
        if not path.is_file():
            raise MissingWeightsError(f"{path}: dlib face recognition model not found; {DLIB_HINT}")
        try:
            self.recognizer = dlib.face_recognition_model_v1(str(path))
        except RuntimeError as e:
            raise ValueError(f"{path}: expected dlib's face recognition model "
                             f"(dlib_face_recognition_resnet_model_v1.dat); dlib cannot read it ({e}); "
                             f"{DLIB_HINT}") from e

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        faces = self.landmarker(rgb)
        return faces[0] if faces else None

    def descriptor(self, rgb: np.ndarray) -> np.ndarray | None:
        rgb = np.ascontiguousarray(rgb[..., :3])
        rects = self.landmarker.detect(rgb)
        if not rects:
            return None
        shape = self.landmarker.predictor(rgb, rects[0])
        return np.asarray(self.recognizer.compute_face_descriptor(rgb, shape), dtype=np.float64)
