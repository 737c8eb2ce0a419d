"""FFHQ face alignment (Karras et al., ffhq-dataset) as an explicit, saved affine transform.

The recipe: from the eye centres and mouth corners build an oriented square ("quad") centred a
little below the eyes, with side ``max(2·|eye_to_eye|·2, 1.8·|eye_to_mouth|·2)``, then resample it
to ``output_size``². We keep the mapping original -> aligned as a 2×3 affine matrix (cv2 pixel
coordinates) so that paste-back can invert it exactly. Borders outside the image are filled by
reflection (FFHQ additionally blurs its reflected padding).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from render2style.utils.io import atomic_write_json


@dataclass
class AlignTransform:
    """Where an aligned crop came from: the quad (TL, BL, BR, TR corners in the original), the affine
    matrix original -> aligned pixels, the crop size, the source file and its size (W, H)."""
    quad: list[list[float]]
    matrix: list[list[float]]
    output_size: int
    source: str
    source_size: list[int]
    detector: str = "landmarks"

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(asdict(self), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AlignTransform:
        with open(path) as f:
            data = json.load(f)
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{path}: not an alignment transform ({e})") from e

    def matrix_for(self, size: int) -> np.ndarray:
        """Affine original -> aligned for a crop resized to ``size``² (e.g. a 1024² generator output)."""
        s = size / self.output_size
        scale = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]])   # pixel-centre aware
        return (scale @ np.vstack([np.asarray(self.matrix), [0, 0, 1]]))[:2]


def points_from_68(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Eye centres (means of iBUG points 36-41 and 42-47) and mouth corners (48, 54) of 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[0] < 68 or lm.shape[1] != 2:
        raise ValueError(f"expected 68 landmarks [68, 2] (iBUG order), got {lm.shape}")
    return {"eye_left": lm[36:42].mean(0), "eye_right": lm[42:48].mean(0),
            "mouth_left": lm[48], "mouth_right": lm[54]}


def points_from_5(points: np.ndarray) -> dict[str, np.ndarray]:
    """MTCNN's 5 points (left eye, right eye, nose, mouth left, mouth right) in the same roles."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"expected 5 points [5, 2] (MTCNN order), got {p.shape}")
    return {"eye_left": p[0], "eye_right": p[1], "mouth_left": p[3], "mouth_right": p[4]}


def ffhq_quad(points: dict[str, np.ndarray]) -> np.ndarray:
    """The FFHQ crop square [4, 2] (TL, BL, BR, TR) from eye centres and mouth corners."""
    eye_avg = (points["eye_left"] + points["eye_right"]) * 0.5
    eye_to_eye = points["eye_right"] - points["eye_left"]
    mouth_avg = (points["mouth_left"] + points["mouth_right"]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    # x: the crop's horizontal half-axis, tilted between the eye line and the normal of eye_to_mouth.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])                      # x rotated by +90° (image y points down)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_to_matrix(quad: np.ndarray, output_size: int) -> np.ndarray:
    """Affine [2, 3] mapping the quad's TL, BL, TR corners to the crop's corners."""
    src = np.asarray(quad, dtype=np.float32)[[0, 1, 3]]
    s = float(output_size)
    dst = np.array([[0, 0], [0, s], [s, 0]], dtype=np.float32) - 0.5    # corners of the pixel grid
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def align_face(image: np.ndarray, points: dict[str, np.ndarray], output_size: int = 1024,
               source: str = "", detector: str = "landmarks") -> tuple[np.ndarray, AlignTransform]:
    """Crop and rotate the face to FFHQ framing.

    Args:
        image: uint8 [H, W, C] (RGB or RGBA; every channel is warped).
        points: from :func:`points_from_68` or :func:`points_from_5`.
        output_size: side of the aligned crop (1024 for FFHQ; 256 for an encoder input).
    Returns:
        (aligned uint8 [output_size, output_size, C], the transform).
    """
    quad = ffhq_quad(points)
    matrix = quad_to_matrix(quad, output_size)
    aligned = warp_antialiased(image, matrix, output_size)
    h, w = image.shape[:2]
    return aligned, AlignTransform(quad=quad.tolist(), matrix=matrix.tolist(), output_size=output_size,
                                   source=str(source), source_size=[w, h], detector=detector)


def warp_antialiased(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``cv2.warpAffine`` to ``size``², shrinking by an integer factor first (INTER_AREA) when the
    affine downsamples more than 2×, as FFHQ does, so large photos do not alias."""
    zoom = np.sqrt(abs(np.linalg.det(matrix[:, :2])))          # aligned pixels per source pixel
    shrink = int(np.floor(0.5 / zoom)) if zoom > 0 else 1
    if shrink > 1:
        h, w = image.shape[:2]
        nw, nh = max(1, round(w / shrink)), max(1, round(h / shrink))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = w / nw, h / nh                             # small pixel j covers source (j+0.5)*s-0.5
        small_to_src = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        matrix = (np.vstack([matrix, [0, 0, 1]]) @ small_to_src)[:2]
    out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(size, size, *image.shape[2:])
