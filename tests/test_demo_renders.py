"""Procedural demo renders: determinism, masks, landmarks, the command line."""
import dataclasses
import json
import logging

import numpy as np
import pytest
from PIL import Image

from render2style.datasets.demo_renders import landmarks_uv, make_demo_renders, project, render_face, sample_params
from render2style.scripts import make_demo_renders as cli

SIZE = 64


def _read(folder, rid):
    rgba = np.asarray(Image.open(folder / f"{rid}.png"))
    hair = Image.open(folder / f"{rid}_hair.png")
    return rgba, hair


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    paths = make_demo_renders(out, 4, seed=0, size=SIZE)
    return out, paths, json.loads((out / "annotations.json").read_text())


def test_same_seed_gives_identical_bytes(demo, tmp_path):
    out, paths, _ = demo
    again = make_demo_renders(tmp_path, 4, seed=0, size=SIZE)
    assert [p.split("/")[-1] for p in again] == [f"demo_{i:05d}.png" for i in range(4)]
    for name in ["annotations.json"] + [f"demo_{i:05d}{s}.png" for i in range(4) for s in ("", "_hair")]:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_other_seed_gives_other_images(demo, tmp_path):
    out, _, _ = demo
    make_demo_renders(tmp_path, 2, seed=1, size=SIZE)
    assert (tmp_path / "demo_00000.png").read_bytes() != (out / "demo_00000.png").read_bytes()


def test_an_image_does_not_depend_on_how_many_are_drawn(demo, tmp_path):
    out, _, _ = demo
    make_demo_renders(tmp_path, 2, seed=0, size=SIZE)
    assert (tmp_path / "demo_00001.png").read_bytes() == (out / "demo_00001.png").read_bytes()


def test_alpha_is_the_face_mask_and_hair_is_separate(demo):
    out, _, _ = demo
    for i in range(4):
        rid = f"demo_{i:05d}"
        rgba, hair = _read(out, rid)
        assert rgba.shape == (SIZE, SIZE, 4) and hair.mode == "L" and hair.size == (SIZE, SIZE)
        _, face, hair_ref = render_face(sample_params(np.random.default_rng([0, i])), SIZE)
        np.testing.assert_array_equal(rgba[..., 3], np.round(face * 255).astype(np.uint8))
        hair = np.asarray(hair)
        np.testing.assert_array_equal(hair, np.round(hair_ref * 255).astype(np.uint8))
        assert (hair == 255).sum() > 0.01 * SIZE ** 2
        assert not np.any((rgba[..., 3] == 255) & (hair == 255))
        assert (rgba[..., 3] == 255).sum() > 0.1 * SIZE ** 2
        assert rgba[0, 0, 3] == rgba[0, -1, 3] == rgba[-1, 0, 3] == 0


def test_annotations_hold_pose_and_68_landmarks_inside_the_image(demo):
    _, _, ann = demo
    assert sorted(ann) == [f"demo_{i:05d}" for i in range(4)]
    for entry in ann.values():
        assert entry["demo"] is True
        assert {"yaw", "pitch", "roll", "light", "skin_tone"} <= set(entry)
        assert abs(np.linalg.norm(entry["light"]) - 1) < 1e-3
        lm = np.array(entry["landmarks"])
        assert lm.shape == (68, 2)
        assert lm.min() >= 0 and lm.max() <= SIZE - 1


def test_eye_landmarks_lie_inside_the_face_mask(tmp_path):
    size = 128
    make_demo_renders(tmp_path, 6, seed=3, size=size)
    ann = json.loads((tmp_path / "annotations.json").read_text())
    for rid, entry in ann.items():
        alpha = np.asarray(Image.open(tmp_path / f"{rid}.png"))[..., 3]
        eyes = np.round(np.array(entry["landmarks"])[36:48]).astype(int)
        assert np.all(alpha[eyes[:, 1], eyes[:, 0]] == 255), rid


def test_landmarks_follow_the_pose():
    p = sample_params(np.random.default_rng([0, 0]))
    nose = {}
    for yaw in (-20, 0, 20):
        q = dataclasses.replace(p, yaw=yaw, pitch=0.0, roll=0.0)
        nose[yaw] = project(q, landmarks_uv(q), 128)[30, 0]
    assert nose[-20] < nose[0] < nose[20]
    level = dataclasses.replace(p, yaw=0.0, pitch=0.0, roll=0.0)
    tilted = dataclasses.replace(level, roll=15.0)
    eyes_level = project(level, landmarks_uv(level), 128)[[36, 45]]
    eyes_tilted = project(tilted, landmarks_uv(tilted), 128)[[36, 45]]
    assert abs(eyes_level[0, 1] - eyes_level[1, 1]) < 1e-6
    angle = np.degrees(np.arctan2(-(eyes_tilted[1, 1] - eyes_tilted[0, 1]), eyes_tilted[1, 0] - eyes_tilted[0, 0]))
    assert abs(angle - 15.0) < 1e-6  # counter-clockwise in the image


def test_command_line_writes_renders_and_says_demo(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        cli.main(["--out", str(tmp_path), "--n", "2", "--seed", "5", "--size", "32"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "annotations.json", "demo_00000.png", "demo_00000_hair.png", "demo_00001.png", "demo_00001_hair.png"]
    assert "demo" in caplog.text
