"""evaluation.identity_drift: zero for one generator against itself, growing with a perturbation of the synthesis,
and the different-code scale, with a stand-in describer (dlib's is exercised by the benchmarks)."""
import copy

import numpy as np
import pytest
import torch

from render2style.evaluation.identity_drift import identity_drift
from render2style.stylegan2 import demo_generator


def describe(rgb):
    """Block means as a 'descriptor'; no face in dark images."""
    if rgb.mean() < 20:
        return None
    return rgb.reshape(8, 32, 8, 32, 3).mean(axis=(1, 3)).ravel() / 255.0


def perturbed(G, scale):
    out = copy.deepcopy(G)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in out.convs.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return out


def test_drift_is_zero_on_itself_and_grows_with_the_perturbation():
    G = demo_generator(0)
    same = identity_drift(G, copy.deepcopy(G), describe, n=12, truncation=0.7)
    assert same["faces_a"] == same["faces_b"] == 12 and same["same_code"]["pairs"] == 12
    assert same["same_code"]["median"] == 0 and same["same_code"]["same_person_rate"] == 1
    assert same["different_codes"]["pairs"] == 11 and same["different_codes"]["median"] > 0
    small, large = (identity_drift(G, perturbed(G, s), describe, n=12)["same_code"]["median"] for s in (0.02, 0.2))
    assert 0 < small < large


def test_codes_without_a_face_on_either_side_are_left_out():
    G = demo_generator(0)
    dark = copy.deepcopy(G)
    with torch.no_grad():
        dark.to_rgbs[-1].bias.fill_(-5.0)   # the last ToRGB's bias: every image clamps to black
    out = identity_drift(G, dark, describe, n=6)
    assert out["faces_a"] == 6 and out["faces_b"] == 0
    assert out["same_code"] == {"pairs": 0}
    assert np.isfinite(out["different_codes"]["median"])
    with pytest.raises(ValueError):
        identity_drift(G, G, describe, n=0)
