"""dlib's 68-point shape predictor for the landmark term of eq. 1 (no gradient).

The predictor file ships in the ``face_recognition_models`` package; it is located with importlib
because that package's ``__init__`` needs ``pkg_resources``. The face box is given (from the render's
landmarks or mask), so no detector runs and both images are measured inside the same box.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from render2style.alignment.landmarks import face_recognition_model_file

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


@functools.lru_cache(maxsize=4)
def _load_predictor(path: str):
    import dlib
    return dlib.shape_predictor(path)


def face_box(size: int, landmarks: np.ndarray | None = None, mask: np.ndarray | None = None,
             margin: float = 0.1) -> tuple[int, int, int, int]:
    """Box (left, top, right, bottom) in pixels of a ``size``² image around ``landmarks`` ``[68, 2]`` (pixels
    of that image) or, when none are given, around the mask region (``mask >= 0.5``), grown by ``margin``."""
    if landmarks is not None:
        pts = np.asarray(landmarks, dtype=np.float64)
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
    elif mask is not None:
        ys, xs = np.nonzero(np.asarray(mask) >= 0.5)
        if len(xs) == 0:
            raise ValueError("face_box: empty mask")
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    else:
        raise ValueError("face_box needs landmarks or a mask")
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    clip = lambda v: int(np.clip(round(v), 0, size - 1))  # noqa: E731
    return clip(x0 - mx), clip(y0 - my), clip(x1 + mx), clip(y1 + my)


class LandmarkDetector:
    """68 dlib landmarks of image batches ``[B, 3, H, W]`` in [-1, 1] inside a fixed box -> ``[B, 68, 2]``."""

    def __init__(self, box: tuple[int, int, int, int], path: str | os.PathLike | None = None):
        import dlib
        self.predictor = _load_predictor(str(path or face_recognition_model_file(PREDICTOR_FILE)))
        self.rect = dlib.rectangle(*box)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        arr = np.ascontiguousarray(arr.permute(0, 2, 3, 1).cpu().numpy())
        out = np.empty((len(arr), 68, 2), dtype=np.float32)
        for b, img in enumerate(arr):  # dlib measures one image per call (about 2 ms at 256²)
            shape = self.predictor(img, self.rect)
            out[b] = [(p.x, p.y) for p in shape.parts()]
        return torch.from_numpy(out).to(images.device)
