"""Identity drift between two generators on the same codes (Wang et al. 2023: after fine-tuning G_real into
G_rendering, one W+ code should still mean one person).

Both generators draw the same z (same seed, stored noise); dlib's face recogniser describes every image (resized
to 256²). The drift is the descriptor distance between G_a(w) and G_b(w) over the codes where both images hold a
face, set against the distance between G_a's images of *different* codes (consecutive samples): the scale of "another
person". dlib calls two faces the same person below 0.6.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from render2style.evaluation.generator_quality import generator_samples

Describer = Callable[[np.ndarray], "np.ndarray | None"]  # RGB uint8 [H, W, 3] -> descriptor, None without a face
SAME_PERSON = 0.6


def _descriptors(G, describe: Describer, *, n: int, truncation: float, seed: int, size: int) -> list:
    out = []
    for batch in generator_samples(G, n, truncation=truncation, seed=seed):
        for img in batch:
            rgb = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
            out.append(describe(np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC))))
    return out


def identity_drift(g_a, g_b, describe: Describer, *, n: int = 200, truncation: float = 0.7, seed: int = 0,
                   size: int = 256) -> dict:
    """Distances between ``g_a(w)`` and ``g_b(w)`` descriptors (same codes) and between ``g_a`` images of
    consecutive codes: counts, medians, means and the fraction under dlib's same-person threshold."""
    if n < 2:
        raise ValueError(f"identity drift needs at least 2 codes, got n={n}")
    a = _descriptors(g_a, describe, n=n, truncation=truncation, seed=seed, size=size)
    b = _descriptors(g_b, describe, n=n, truncation=truncation, seed=seed, size=size)
    same = [float(np.linalg.norm(x - y)) for x, y in zip(a, b) if x is not None and y is not None]
    other = [float(np.linalg.norm(x - y)) for x, y in zip(a[:-1], a[1:]) if x is not None and y is not None]

    def stats(d: list[float]) -> dict:
        if not d:
            return {"pairs": 0}
        return {"pairs": len(d), "median": float(np.median(d)), "mean": float(np.mean(d)),
                "same_person_rate": float(np.mean(np.asarray(d) < SAME_PERSON))}

    return {"n": n, "truncation": truncation, "seed": seed, "faces_a": sum(x is not None for x in a),
            "faces_b": sum(y is not None for y in b), "same_code": stats(same), "different_codes": stats(other)}
