"""Per-image quality metrics of generated faces against references, and their summary.

Conventions: images are uint8 RGB arrays. MSE, LPIPS, SSIM and MS-SSIM compare both images resized
to ``size``² (256, as pSp) in the [-1, 1] range. Identity and landmarks use the output resized to the
reference's resolution. Landmark error (Garbin et al. 4.2): absolute horizontal and vertical pixel
differences of the 68 dlib landmarks found on each image; per image the median over the 68 points,
in the summary the median over all points of all images. A metric that cannot be computed (no
weights, no face found) is ``None`` (``n/a`` in the CSV) and the summary says why.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from render2style.criteria.ssim import ms_ssim, ssim

LandmarkFn = Callable[[np.ndarray], Optional[np.ndarray]]   # uint8 RGB -> [68, 2] pixels or None


@dataclass
class Pair:
    """One output/reference pair; codes are W+ [n_latent, 512] when known (amortization-gap mode)."""
    name: str
    output: np.ndarray
    reference: np.ndarray
    output_code: np.ndarray | None = None
    reference_code: np.ndarray | None = None
    runtime_s: float | None = None              # seconds the output took per image
    reference_runtime_s: float | None = None    # seconds the reference took (teacher)


def to_tensor(rgb: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-1, 1], optionally resized (antialiased) to ``size``²."""
    t = torch.from_numpy(np.array(rgb[..., :3])).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    if size is not None and t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t


def resize_like(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``rgb`` resized to ``like``'s height and width (uint8)."""
    if rgb.shape[:2] == like.shape[:2]:
        return rgb
    from PIL import Image
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize(like.shape[1::-1], Image.BICUBIC))


class Evaluator:
    """Computes one CSV row per :class:`Pair`.

    Args:
        size: resolution of the pixel metrics.
        lpips: an ``lpips.LPIPS`` network (``criteria.build_lpips``) or None.
        identity: name -> embedder returning unit embeddings ``[B, D]`` for [-1, 1] images
            (``criteria.IdentityEncoder``), each giving a cosine-similarity column ``id_<name>``.
        dlib_face: a :class:`render2style.evaluation.dlib_face.DlibFace` for ``id_dlib`` (and landmarks).
        landmarks: landmark function for the landmark error (default: ``dlib_face.landmarks``).
        unavailable: metric -> reason, reported in the summary for metrics switched off.
    """

    def __init__(self, size: int = 256, lpips: torch.nn.Module | None = None,
                 identity: dict[str, torch.nn.Module] | None = None, dlib_face=None,
                 landmarks: LandmarkFn | None = None, device: str | torch.device = "cpu",
                 unavailable: dict[str, str] | None = None):
        self.size, self.lpips, self.identity = size, lpips, identity or {}
        self.dlib_face, self.device = dlib_face, torch.device(device)
        self.landmarks = landmarks or (dlib_face.landmarks if dlib_face is not None else None)
        self.unavailable = dict(unavailable or {})
        self.landmark_abs: list[np.ndarray] = []       # [68, 2] absolute errors of every evaluated pair
        self.missed: dict[str, int] = {}              # metric -> pairs where no face was found

    @torch.no_grad()
    def __call__(self, pair: Pair) -> dict:
        t0 = time.perf_counter()
        x = to_tensor(pair.output, self.size).to(self.device)
        y = to_tensor(pair.reference, self.size).to(self.device)
        row: dict = {"name": pair.name, "mse": float(F.mse_loss(x, y)),
                     "lpips": float(self.lpips(x, y).flatten()[0]) if self.lpips is not None else None,
                     "ssim": float(ssim(x, y)[0]), "ms_ssim": float(ms_ssim(x, y)[0])}
        out_full = resize_like(pair.output, pair.reference)
        for name, net in self.identity.items():
            a = net(to_tensor(out_full).to(self.device))
            b = net(to_tensor(pair.reference).to(self.device))
            row[f"id_{name}"] = float((a * b).sum())
        if self.dlib_face is not None:
            row.update(self._dlib_identity(out_full, pair.reference))
        row.update(self._landmark_error(out_full, pair.reference))
        row.update(self._latent_distance(pair.output_code, pair.reference_code))
        row["runtime_s"] = pair.runtime_s
        row["reference_runtime_s"] = pair.reference_runtime_s
        row["eval_s"] = time.perf_counter() - t0
        return row

    def _dlib_identity(self, out: np.ndarray, ref: np.ndarray) -> dict:
        da, db = self.dlib_face.descriptor(out), self.dlib_face.descriptor(ref)
        if da is None or db is None:
            self.missed["id_dlib"] = self.missed.get("id_dlib", 0) + 1
            return {"id_dlib": None, "id_dlib_dist": None}
        cos = float(da @ db / max(np.linalg.norm(da) * np.linalg.norm(db), 1e-12))
        return {"id_dlib": cos, "id_dlib_dist": float(np.linalg.norm(da - db))}

    def _landmark_error(self, out: np.ndarray, ref: np.ndarray) -> dict:
        if self.landmarks is None:
            return {"lmk_x": None, "lmk_y": None}
        la, lb = self.landmarks(out), self.landmarks(ref)
        if la is None or lb is None:
            self.missed["landmarks"] = self.missed.get("landmarks", 0) + 1
            return {"lmk_x": None, "lmk_y": None}
        err = np.abs(np.asarray(la, np.float64) - np.asarray(lb, np.float64))
        self.landmark_abs.append(err)
        return {"lmk_x": float(np.median(err[:, 0])), "lmk_y": float(np.median(err[:, 1]))}

    @staticmethod
    def _latent_distance(a: np.ndarray | None, b: np.ndarray | None) -> dict:
        if a is None or b is None:
            return {}
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"latent shapes differ: {a.shape} vs {b.shape}")
        return {"latent_mse": float(np.mean((a - b) ** 2)),
                "latent_l2": float(np.mean(np.linalg.norm(a - b, axis=-1)))}   # mean per-layer L2

    def summary(self, rows: list[dict]) -> dict:
        """Mean and median of every numeric column, pooled landmark medians, speedup, and n/a reasons."""
        out: dict = {"pairs": len(rows), "metrics": {}}
        keys = [k for k in (rows[0] if rows else {}) if k != "name"]
        for k in keys:
            vals = np.array([r[k] for r in rows if r.get(k) is not None], dtype=np.float64)
            out["metrics"][k] = ({"mean": float(vals.mean()), "median": float(np.median(vals)), "n": int(vals.size)}
                                 if vals.size else None)
        if self.landmark_abs:
            pooled = np.concatenate(self.landmark_abs)
            out["landmark_median_abs_px"] = {"x": float(np.median(pooled[:, 0])), "y": float(np.median(pooled[:, 1])),
                                             "images": len(self.landmark_abs)}
        m = out["metrics"]
        if m.get("runtime_s") and m.get("reference_runtime_s"):
            out["speedup_reference_over_output"] = m["reference_runtime_s"]["mean"] / m["runtime_s"]["mean"]
        out["not_available"] = dict(self.unavailable)
        out["no_face_found"] = dict(self.missed)
        return out


def evaluate_pairs(pairs: Iterable[Pair], evaluator: Evaluator | None = None) -> tuple[list[dict], dict]:
    """Rows (one per pair) and the summary; the default evaluator computes the pixel metrics only."""
    evaluator = evaluator or Evaluator(unavailable={"lpips": "no LPIPS network given",
                                                    "landmarks": "no landmark function given"})
    rows = [evaluator(p) for p in pairs]
    return rows, evaluator.summary(rows)
