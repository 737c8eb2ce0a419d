"""The shipped demo face generator: strict load, file checksum, fp16 size budget and the documented samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from render2style.evaluation.generator_quality import generator_samples
from render2style.stylegan2 import Generator, infer_config, read_checkpoint
from render2style.stylegan2.demo import DEMO_FACES_WEIGHTS, demo_face_generator, demo_faces_record
from render2style.utils.io import file_sha256


def test_file_matches_its_record_and_budget():
    record = demo_faces_record()
    assert file_sha256(DEMO_FACES_WEIGHTS) == record["sha256"]
    assert DEMO_FACES_WEIGHTS.stat().st_size <= 20 * 2 ** 20
    state = read_checkpoint(DEMO_FACES_WEIGHTS)["g_ema"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    assert "non-commercial" in record["terms"] and "UTKFace" in record["derived_from"]


def test_loads_strictly_and_reproduces_the_documented_samples():
    G, latent_avg = demo_face_generator()
    reference = Generator(**infer_config(read_checkpoint(DEMO_FACES_WEIGHTS)["g_ema"]))
    assert G.state_dict().keys() == reference.state_dict().keys() and G.size == 64
    assert all(p.dtype == torch.float32 for p in G.parameters())
    samples = next(generator_samples(G, 4, truncation=0.7, seed=0, w_avg=latent_avg)).astype(np.float64)
    want = demo_faces_record()["sample_checksum"]
    assert samples.shape == (4, 3, 64, 64)
    assert samples.mean() == pytest.approx(want["mean"], abs=0.05)
    assert samples.std(ddof=1) == pytest.approx(want["std"], abs=0.05)


def test_dlib_finds_faces_in_its_samples_and_none_in_random_weights():
    pytest.importorskip("dlib")
    from render2style.evaluation.generator_quality import face_rate
    from render2style.stylegan2 import demo_generator
    G, latent_avg = demo_face_generator()
    faces = next(generator_samples(G, 24, truncation=0.7, seed=1, w_avg=latent_avg))
    noise = next(generator_samples(demo_generator(0), 24, seed=1))
    assert face_rate(faces) >= 0.75 and face_rate(noise) == 0.0
