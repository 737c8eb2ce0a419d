"""evaluation.face_figures: the landmark error and face rate against an independent computation with a fake
detector and landmarker (dlib itself is exercised by the benchmarks)."""
import numpy as np
import pytest

from render2style.datasets.renders import Render
from render2style.evaluation.face_figures import face_figures


def _render(rid: str, seed: int) -> Render:
    rng = np.random.default_rng(seed)
    return Render(id=rid, rgb=rng.integers(0, 255, (256, 256, 3), dtype=np.uint8),
                  face_mask=np.ones((256, 256), np.float32), hair_mask=None,
                  landmarks=rng.uniform(40, 200, (68, 2)).astype(np.float32), path=f"{rid}.png")


class FakeLandmarks:
    """Answers the images in order: the render's landmarks moved by an offset, or no face (None)."""

    def __init__(self, renders, answers):
        self.renders, self.answers, self.shapes = renders, list(answers), []

    def __call__(self, rgb):
        self.shapes.append(rgb.shape)
        rid, offset = self.answers.pop(0)
        return [] if offset is None else [self.renders[rid].landmarks + np.asarray(offset, np.float32)]


def test_landmark_error_and_face_rate_against_a_hand_computation():
    renders = {f"{i:06d}": _render(f"{i:06d}", i) for i in range(4)}
    bright, dark = np.full((64, 64, 3), 200, np.uint8), np.full((64, 64, 3), 10, np.uint8)
    images = {"000000": bright, "000001": bright, "000002": bright, "000003": dark}
    offsets = [(1.0, -3.0), (-2.0, 1.0), (6.0, 0.0)]
    fake = FakeLandmarks(renders, [(f"{i:06d}", o) for i, o in enumerate(offsets)] + [("000003", None)])
    detector = lambda rgb, upsample: [1] if rgb.mean() > 100 else []  # noqa: E731
    out = face_figures(images, renders, landmarks=fake, detector=detector)
    assert out["images"] == 4 and out["landmarks_found"] == 3
    assert out["face_rate"] == pytest.approx(3 / 4)
    # pooled over 3 × 68 points: |dx| in {1, 2, 6} -> median 2 (mean 3); |dy| in {3, 1, 0} -> median 1
    assert out["median_abs_px_x"] == pytest.approx(2.0) and out["median_abs_px_y"] == pytest.approx(1.0)
    expected = np.mean([np.hypot(*o) for o in offsets]) / 256 * 100
    assert out["mean_dist_pct_width"] == pytest.approx(expected)
    assert all(s == (256, 256, 3) for s in fake.shapes)  # compared at the render's size


def test_images_without_renders_or_annotations_are_refused():
    renders = {"000000": _render("000000", 0)}
    image = {"000009": np.zeros((64, 64, 3), np.uint8)}
    with pytest.raises(KeyError, match="000009"):
        face_figures(image, renders, landmarks=lambda rgb: [], detector=lambda rgb, up: [])
    renders["000009"] = Render(**{**vars(_render("000009", 9)), "landmarks": None})
    with pytest.raises(ValueError, match="000009: no landmark annotation"):
        face_figures(image, renders, landmarks=lambda rgb: [], detector=lambda rgb, up: [])
    assert face_figures({}, renders, landmarks=lambda rgb: []) == {"images": 0}


def test_the_tool_names_missing_folders_and_ids_it_cannot_split(tmp_path, capsys):
    from render2style.datasets import make_demo_renders
    from render2style.scripts import face_figures as tool

    with pytest.raises(SystemExit):
        tool.main(["--renders", str(tmp_path), "--heldout_from", "1", "--images", f"x={tmp_path / 'nope'}",
                   "--out", str(tmp_path / "f.json")])
    err = capsys.readouterr().err
    assert "not a folder" in err and str(tmp_path / "nope") in err
    assert tool.id_number("000041", "r") == 41 and tool.id_number("demo_00007", "r") == 7
    with pytest.raises(ValueError, match="'front' does not end with a number"):
        tool.id_number("front", str(tmp_path))
    make_demo_renders(tmp_path / "renders", 2, seed=0, size=64)   # ids demo_00000, demo_00001: split by number
    assert tool.main(["--renders", str(tmp_path / "renders"), "--heldout_from", "1",
                      "--out", str(tmp_path / "f.json")])["renders_64_heldout"]["images"] == 1
