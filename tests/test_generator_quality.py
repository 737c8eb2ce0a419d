"""Generator quality metrics: FD against an independent formula, the face rate's detector input, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from render2style.evaluation.generator_quality import face_rate, frechet_distance


def _fd_by_eigenvalues(a: np.ndarray, b: np.ndarray) -> float:
    """tr((Σa Σb)^½) as the sum of square roots of the eigenvalues of Σa^½ Σb Σa^½ (symmetric, PSD)."""
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(ca)
    root = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root @ cb @ root)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * trace_sqrt)


def test_frechet_distance_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(_fd_by_eigenvalues(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 3))
    assert frechet_distance(a, a + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-6)


def test_face_rate_resizes_for_the_detector_and_counts_images_with_a_face():
    seen = []

    def detector(rgb, upsample):
        seen.append((rgb.shape, upsample))
        return [object()] if rgb.mean() > 100 else []

    images = np.zeros((4, 3, 64, 64), np.uint8)
    images[:3] = 200
    assert face_rate(images, detector=detector) == 0.75
    assert seen == [((256, 256, 3), 0)] * 4


def test_evaluate_generator_cli_writes_its_figures(tmp_path):
    pytest.importorskip("dlib")
    from PIL import Image

    from render2style.scripts.evaluate_generator import main
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k in range(8):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(photos / f"p{k}.png")
    out = main(["--stylegan_weights", "demo-random", "--real", str(photos), "--n_face", "6", "--grid", "2",
                "--held_out_every", "4", "--out", str(tmp_path / "eval")])
    written = json.loads((tmp_path / "eval" / "generator_quality.json").read_text())
    assert written == pytest.approx(out) and out["face_rate"] == 0.0 and out["fd_vgg16"] is None
    assert out["n_real_face"] == 2  # photos 3 and 7 are the held-out ones
    assert Image.open(tmp_path / "eval" / "samples.png").size == (128, 128)
