"""Evaluation metrics and scripts/evaluate.py (render2style.evaluation)."""
import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image

from render2style.evaluation.metrics import Evaluator, Pair, evaluate_pairs
from render2style.scripts import evaluate


def textured(seed=0, size=64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def spot_image(x: int, y: int, size: int = 64) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[y, x] = 255
    return img


OFFSETS = np.random.default_rng(1).uniform(-10, 10, (68, 2))


def spot_landmarks(rgb: np.ndarray):
    """A deterministic stand-in for dlib: 68 points at fixed offsets from the brightest pixel."""
    y, x = np.unravel_index(np.argmax(rgb[..., 0]), rgb.shape[:2])
    return np.array([x, y], np.float64) + OFFSETS


def test_identical_pairs_have_zero_error():
    img = textured()
    ev = Evaluator(landmarks=spot_landmarks)
    rows, summary = evaluate_pairs([Pair("a", img, img.copy()), Pair("b", textured(1), textured(1))], ev)
    for r in rows:
        assert r["mse"] == 0.0 and r["lmk_x"] == 0.0 and r["lmk_y"] == 0.0
        assert r["ssim"] == pytest.approx(1.0, abs=1e-5) and r["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert summary["landmark_median_abs_px"] == {"x": 0.0, "y": 0.0, "images": 2}


def test_known_shift_gives_the_known_landmark_error():
    ev = Evaluator(landmarks=spot_landmarks)
    pairs = [Pair("p0", spot_image(30, 20), spot_image(33, 18)), Pair("p1", spot_image(10, 40), spot_image(15, 41))]
    rows, summary = evaluate_pairs(pairs, ev)
    assert (rows[0]["lmk_x"], rows[0]["lmk_y"]) == pytest.approx((3.0, 2.0))
    assert (rows[1]["lmk_x"], rows[1]["lmk_y"]) == pytest.approx((5.0, 1.0))
    # pooled median over all 2 x 68 points: half the points err by 3 and half by 5 horizontally
    assert summary["landmark_median_abs_px"]["x"] == pytest.approx(4.0)
    assert summary["landmark_median_abs_px"]["y"] == pytest.approx(1.5)


def test_landmark_error_is_measured_at_the_reference_resolution():
    ev = Evaluator(landmarks=lambda im: np.array([[im.shape[1], im.shape[0]]] * 68, np.float64))
    row = ev(Pair("x", textured(size=64), textured(size=48)))
    assert row["lmk_x"] == 0.0                       # the output was resized to 48² before the landmarks


def test_missing_faces_give_n_a_and_are_counted():
    ev = Evaluator(landmarks=lambda im: None)
    rows, summary = evaluate_pairs([Pair("a", textured(), textured())], ev)
    assert rows[0]["lmk_x"] is None and summary["no_face_found"] == {"landmarks": 1}
    assert summary["metrics"]["lmk_x"] is None


def test_latent_distance_and_speedup():
    a, b = np.zeros((10, 512), np.float32), np.full((10, 512), 0.5, np.float32)
    ev = Evaluator()
    rows, summary = evaluate_pairs([Pair("a", textured(), textured(), a, b, runtime_s=0.1,
                                         reference_runtime_s=30.0)], ev)
    assert rows[0]["latent_mse"] == pytest.approx(0.25)
    assert rows[0]["latent_l2"] == pytest.approx(0.5 * np.sqrt(512))
    assert summary["speedup_reference_over_output"] == pytest.approx(300.0)


def _save(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / f"{name}.png")


def test_evaluate_script_writes_csv_with_n_a_and_a_summary(tmp_path):
    for i in range(3):
        _save(tmp_path / "out" / "images", f"r{i}", textured(i))
        _save(tmp_path / "ref", f"r{i}", textured(i))
    _save(tmp_path / "ref", "extra", textured(9))
    assert evaluate.main(["--outputs", str(tmp_path / "out"), "--references", str(tmp_path / "ref"),
                          "--out", str(tmp_path / "ev"), "--dlib", "false"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "ev" / "metrics.csv")))
    assert [r["name"] for r in rows] == ["r0", "r1", "r2"]
    assert all(float(r["mse"]) == 0.0 and r["lpips"] == "n/a" for r in rows)
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert "lpips_weights" in summary["not_available"]["lpips"]
    assert summary["metrics"]["mse"]["mean"] == 0.0 and summary["mode"] == "references"


def test_amortization_gap_mode_compares_with_the_teacher_targets(tmp_path):
    enc, tgt = tmp_path / "enc", tmp_path / "targets"
    for i in range(2):
        _save(enc / "images", f"r{i}", textured(i))
        _save(tgt / "images", f"r{i}", textured(i + 5))
        (enc / "latents").mkdir(exist_ok=True)
        (tgt / "latents").mkdir(exist_ok=True)
        (tgt / "meta").mkdir(exist_ok=True)
        np.save(enc / "latents" / f"r{i}.npy", np.zeros((10, 512), np.float32))
        np.save(tgt / "latents" / f"r{i}.npy", np.ones((10, 512), np.float32))
        (tgt / "meta" / f"r{i}.json").write_text(json.dumps({"seconds": 12.0}))
    (enc / "summary.json").write_text(json.dumps({"images": 2, "model_seconds": 0.2}))
    assert evaluate.main(["--outputs", str(enc), "--targets", str(tgt), "--out", str(tmp_path / "ev"),
                          "--dlib", "false"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["mode"] == "amortization_gap"
    assert summary["metrics"]["latent_mse"]["mean"] == pytest.approx(1.0)
    assert summary["metrics"]["mse"]["mean"] > 0
    assert summary["speedup_reference_over_output"] == pytest.approx(120.0)


def test_encoder_speed_leaves_out_the_first_batch_and_demo_inputs_are_flagged(tmp_path, caplog):
    enc, tgt = tmp_path / "enc", tmp_path / "targets"
    for i in range(2):
        _save(enc / "images", f"r{i}", textured(i))
        _save(tgt / "images", f"r{i}", textured(i + 5))
        (tgt / "meta").mkdir(parents=True, exist_ok=True)
        (tgt / "meta" / f"r{i}.json").write_text(json.dumps({"seconds": 12.0}))
    (tgt / "run.json").write_text(json.dumps({"demo": True}))
    # a compiled run: 100 s in the first batch (compilation), 0.1 s per image after it
    (enc / "summary.json").write_text(json.dumps({"images": 2, "model_seconds": 100.1, "compile": True,
                                                  "steady_seconds_per_image": 0.1}))
    with caplog.at_level(logging.WARNING):
        assert evaluate.main(["--outputs", str(enc), "--targets", str(tgt), "--out", str(tmp_path / "ev"),
                              "--dlib", "false"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["speedup_reference_over_output"] == pytest.approx(120.0)
    assert summary["demo"] is True and any(r.getMessage().startswith("DEMO") for r in caplog.records)
