"""Face figures of generated images against the renders they came from (Garbin et al. 2020, §4.2).

For images named by render id: dlib's face rate (the image resized to 256², as for a generator's samples) and the
68-landmark error of dlib's landmarks on the image (resized to the render's size) against the render's own
annotation: the pooled median of |dx| and |dy| in render pixels and the mean point distance in % of the width.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from render2style.evaluation.generator_quality import face_rate
from render2style.evaluation.metrics import resize_like

Landmarker = Callable[[np.ndarray], list]  # RGB uint8 [H, W, 3] -> list of [68, 2] arrays, largest face first


def face_figures(images: Mapping[str, np.ndarray], renders: Mapping[str, object], *, landmarks: Landmarker,
                 detector=None) -> dict:
    """Figures of ``images`` (render id -> uint8 [h, w, 3]) against ``renders`` (id -> Render with ``rgb`` and
    68-point ``landmarks``): ``images``, ``face_rate``, ``landmarks_found`` and, when any were found,
    ``median_abs_px_x`` / ``_y`` and ``mean_dist_pct_width``."""
    if not images:
        return {"images": 0}
    missing = sorted(set(images) - set(renders))
    if missing:
        raise KeyError(f"images without a render: {missing[:5]}")
    rate = face_rate(np.stack([im.transpose(2, 0, 1) for im in images.values()]), detector=detector)
    errors, widths = [], []
    for rid, im in images.items():
        render = renders[rid]
        if render.landmarks is None:
            raise ValueError(f"render {rid}: no landmark annotation to compare with")
        found = landmarks(resize_like(im, render.rgb))
        if found:
            errors.append(np.abs(np.asarray(found[0], np.float64) - render.landmarks))
            widths.append(render.rgb.shape[1])
    out = {"images": len(images), "face_rate": rate, "landmarks_found": len(errors)}
    if errors:
        pooled = np.concatenate(errors)
        out.update(median_abs_px_x=float(np.median(pooled[:, 0])), median_abs_px_y=float(np.median(pooled[:, 1])),
                   mean_dist_pct_width=float(np.mean([np.linalg.norm(e, axis=1).mean() / w * 100
                                                      for e, w in zip(errors, widths)])))
    return out
