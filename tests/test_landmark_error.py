"""teacher.quality.LandmarkError (the flywheel's and the teacher benchmark's landmark error): dlib or MTCNN points,
mean distance in % of the image width, on a demo render and the same render shifted by a known offset."""
import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from render2style.datasets import make_demo_renders
from render2style.scripts.benchmark_teacher_quality import landmark_error
from render2style.teacher.quality import LandmarkError


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render")
    make_demo_renders(folder, n=1, seed=0)
    rgb = np.asarray(Image.open(folder / "demo_00000.png"))[..., :3]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1   # [3, 256, 256] in [-1, 1]


@pytest.mark.parametrize("detector", ["dlib", "mtcnn"])
def test_a_shifted_face_is_off_by_the_shift(face, detector):
    err = LandmarkError(detector)
    assert err(face, face) == 0
    errors = []
    for dx in (12, 24):
        shifted = torch.roll(face, shifts=dx, dims=2)       # the border that wraps round is background
        errors.append(err(face, shifted))
        assert errors[-1] == pytest.approx(dx / 256 * 100, abs=1.0), dx   # the detectors' own jitter: ~1 % width
    assert errors[1] > errors[0] + 3
    assert (err.found, err.tried) == (3, 3)
    with pytest.raises(ValueError, match="landmark detector"):
        LandmarkError("haar")


def test_auto_takes_mtcnn_for_small_generators():
    args = argparse.Namespace(landmarks="auto", no_landmarks=False)
    assert landmark_error(args, 64).detector == "mtcnn" and landmark_error(args, 1024).detector == "dlib"
    assert landmark_error(argparse.Namespace(landmarks="dlib", no_landmarks=False), 64).detector == "dlib"
    assert landmark_error(argparse.Namespace(landmarks="auto", no_landmarks=True), 64) is None
