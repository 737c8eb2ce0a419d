"""The target-generation job: atomic and resumable, exact shards, recorded demo option, flipped targets."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

from render2style.datasets import build_render_source, make_demo_renders
from render2style.pretrained import MissingWeightsError
from render2style.scripts import generate_targets
from render2style.stylegan2 import demo_generator
from render2style.teacher import TeacherConfig, TeacherResult, job

N_LATENT, SIZE = 4, 8


@dataclass
class Render:
    id: str
    rgb: np.ndarray
    face_mask: np.ndarray
    hair_mask: Optional[np.ndarray]
    landmarks: Optional[np.ndarray]
    path: str


class FakeSource:
    """Indexable renders with ``.ids``; ``bad`` ids raise like an unreadable file."""

    def __init__(self, n, bad=()):
        self.ids = [f"r{k:03d}" for k in range(n)][::-1]  # unsorted on purpose
        self.bad = set(bad)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        rid = self.ids[i]
        if rid in self.bad:
            raise ValueError(f"/data/{rid}.png: not a readable image")
        rng = np.random.default_rng(i)
        mask = np.zeros((32, 32), np.float32)
        mask[8:24, 6:20] = 1
        return Render(rid, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), mask, None,
                      rng.uniform(0, 31, (68, 2)).astype(np.float32), f"/data/{rid}.png")


class FakeTeacher:
    """Stands in for ``run_teacher_batch``: records its inputs; raises at render number ``fail_at`` (1-based)
    to simulate a crash."""

    def __init__(self, fail_at=None):
        self.calls, self.inputs, self.streams, self.fail_at = 0, [], [], fail_at

    def __call__(self, method, G, inps, cfg, perceptual, seed=0, render_ids=(), flips=()):
        results = []
        for inp, render_id, flip in zip(inps, render_ids, flips):
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt("killed")
            self.inputs.append(inp)
            self.streams.append({"render_id": render_id, "flip": flip})
            w = torch.full((N_LATENT, 512), float(inp.image.mean()))
            results.append(TeacherResult(w, torch.zeros(3, SIZE, SIZE), {"loss": 0.5, "ssim": 0.9, "seed": seed + 1}))
        return results


@pytest.fixture
def fake(monkeypatch):
    teacher = FakeTeacher()
    monkeypatch.setattr(job, "run_teacher_batch", teacher)
    monkeypatch.setattr(job, "resolve_priors", lambda G, cfg, device, seed: cfg)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return teacher


FAKE_G = SimpleNamespace(size=SIZE, n_latent=N_LATENT, style_dim=512)
CFG = TeacherConfig.demo()


def run(out, source, method="garbin", perceptual=False, **kw):
    return job.generate_targets(source, out, FAKE_G, CFG, method, perceptual, progress=False, **kw)


def finished(out):
    return sorted(p.stem for p in (Path(out) / "meta").glob("*.json"))


def all_files(out):
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())


def test_targets_have_the_documented_layout(tmp_path, fake):
    stats = run(tmp_path, FakeSource(3))
    assert stats["done"] == 3
    for rid in ("r000", "r001", "r002"):
        w = np.load(tmp_path / "latents" / f"{rid}.npy")
        assert w.dtype == np.float32 and w.shape == (N_LATENT, 512)
        assert (tmp_path / "images" / f"{rid}.png").is_file()
    meta = json.loads((tmp_path / "meta" / "r001.json").read_text())
    assert meta["id"] == "r001" and meta["render"] == "/data/r001.png" and meta["seed"] == 1
    assert meta["method"] == "garbin" and meta["loss"] == 0.5 and meta["ssim"] == 0.9 and "seconds" in meta
    with open(tmp_path / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["r000", "r001", "r002"]


def test_crash_mid_run_leaves_no_partial_outputs_and_resume_skips_finished(tmp_path, monkeypatch, fake):
    source = FakeSource(5)
    monkeypatch.setattr(job, "run_teacher_batch", FakeTeacher(fail_at=3))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, source)
    assert finished(tmp_path) == ["r000", "r001"]
    files = all_files(tmp_path)
    assert not [f for f in files if f.endswith(".tmp")]
    assert sorted(Path(f).stem for f in files if f.startswith("latents/")) == ["r000", "r001"]
    assert sorted(Path(f).stem for f in files if f.startswith("images/")) == ["r000", "r001"]

    resumed = FakeTeacher()
    monkeypatch.setattr(job, "run_teacher_batch", resumed)
    stats = run(tmp_path, source)
    assert resumed.calls == 3 and stats["already_done"] == 2 and stats["done"] == 3
    assert finished(tmp_path) == [f"r{k:03d}" for k in range(5)]
    assert run(tmp_path, source)["done"] == 0 and resumed.calls == 3


def test_failure_while_writing_meta_removes_the_items_latent_and_image(tmp_path, monkeypatch, fake):
    def broken_json(obj, path):
        raise OSError("disk full")
    monkeypatch.setattr(job, "atomic_write_json", broken_json)
    (tmp_path / "run.json").write_text(json.dumps({}))  # run.json itself is written by the real writer
    monkeypatch.setattr(job, "check_run_config", lambda out, config: None)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path, FakeSource(2))
    assert not list((tmp_path / "latents").iterdir()) and not list((tmp_path / "images").iterdir())


def test_leftovers_of_a_killed_process_are_removed_on_resume(tmp_path, fake):
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "r001.npy").write_bytes(b"half")              # latent without meta
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / ".r002.png.abc123_x.tmp").write_bytes(b"half")  # interrupted atomic write
    run(tmp_path, FakeSource(3), limit=1)  # only r000 is this run's work: r001/r002 are left alone
    assert (tmp_path / "latents" / "r001.npy").read_bytes() == b"half"
    run(tmp_path, FakeSource(3))
    assert not [f for f in all_files(tmp_path) if f.endswith(".tmp")]
    assert np.load(tmp_path / "latents" / "r001.npy").shape == (N_LATENT, 512)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_sorted_ids_exactly(n):
    ids = [f"x{k}" for k in range(11)][::-1]
    parts = [set(job.shard_ids(ids, (i, n))) for i in range(n)]
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == len(ids)


def test_shard_jobs_write_disjoint_parts_of_the_whole(tmp_path, fake):
    source = FakeSource(7)
    done = [run(tmp_path, source, shard=(i, 3))["done"] for i in range(3)]
    assert done == [3, 2, 2] and fake.calls == 7
    assert finished(tmp_path) == sorted(source.ids)
    shards = {json.loads(p.read_text())["shard"] for p in (tmp_path / "meta").glob("*.json")}
    assert shards == {"0/3", "1/3", "2/3"}


@pytest.mark.parametrize("shard", [None, (1, 2)])
def test_torchrun_ranks_partition_their_shard_exactly(shard):
    ids = [f"x{k}" for k in range(13)]
    world = 3
    eff = [job.resolve_shard(shard, {"RANK": str(r), "WORLD_SIZE": str(world)}) for r in range(world)]
    parts = [set(job.shard_ids(ids, s)) for s in eff]
    expected = set(job.shard_ids(ids, shard or (0, 1)))
    assert set().union(*parts) == expected and sum(map(len, parts)) == len(expected)


def test_job_under_torchrun_env_takes_its_rank_shard(tmp_path, monkeypatch, fake):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert run(tmp_path, FakeSource(5))["shard"] == [rank, 2]
    assert fake.calls == 5 and len(finished(tmp_path)) == 5


def test_parse_shard():
    assert job.parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "a/b", "3"):
        with pytest.raises(ValueError, match="--shard"):
            job.parse_shard(bad)


def test_demo_option_is_recorded_in_every_row_and_run_json(tmp_path, fake):
    run(tmp_path, FakeSource(2), perceptual=False)
    for p in (tmp_path / "meta").glob("*.json"):
        row = json.loads(p.read_text())
        assert row["perceptual"] is False and row["demo"] is True
    cfg = json.loads((tmp_path / "run.json").read_text())
    assert cfg["perceptual"] is False and cfg["demo"] is True and cfg["teacher"]["n_samples"] == CFG.n_samples
    with open(tmp_path / "metadata.csv") as f:
        assert {r["perceptual"] for r in csv.DictReader(f)} == {"False"}


def test_incompatible_run_json_is_refused(tmp_path, fake):
    run(tmp_path, FakeSource(2), method="garbin")
    with pytest.raises(ValueError, match=r"run\.json.*method: 'garbin' there, 'projector' now"):
        run(tmp_path, FakeSource(2), method="projector")
    with pytest.raises(ValueError, match="generator"):
        run(tmp_path, FakeSource(2), generator_name="/weights/ffhq.pt")


def test_flip_landmark_permutation_is_an_involution_pairing_left_and_right():
    perm = np.array(job.FLIP_68)
    assert sorted(perm) == list(range(68)) and (perm[perm] == np.arange(68)).all()
    assert perm[36] == 45 and perm[48] == 54 and perm[0] == 16 and perm[30] == 30


def test_flipped_targets_use_the_mirrored_render_and_landmarks(tmp_path, fake):
    source = FakeSource(2)
    run(tmp_path, source, flip=True)
    assert finished(tmp_path) == ["r000", "r000_flip", "r001", "r001_flip"]
    orig = source[source.ids.index("r000")]
    plain, flipped = fake.inputs[0], fake.inputs[1]
    assert torch.equal(flipped.image, plain.image.flip(-1))
    assert torch.equal(flipped.face_mask, plain.face_mask.flip(-1))
    expected = orig.landmarks[job.FLIP_68].copy()
    expected[:, 0] = 31 - expected[:, 0]
    assert np.allclose(flipped.landmarks.numpy(), expected)
    meta = json.loads((tmp_path / "meta" / "r000_flip.json").read_text())
    assert meta["flip"] is True and meta["render_id"] == "r000"


def test_bad_render_is_an_error_naming_it_unless_skipped(tmp_path, fake):
    with pytest.raises(ValueError, match=r"r001.*/data/r001\.png"):
        run(tmp_path, FakeSource(3, bad={"r001"}))
    stats = run(tmp_path, FakeSource(3, bad={"r001"}), skip_corrupt=True)
    assert stats["skipped_corrupt"] == 1 and finished(tmp_path) == ["r000", "r002"]


def test_end_to_end_with_the_real_teacher_on_demo_renders(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    make_demo_renders(tmp_path / "renders", n=2, size=64)
    source = build_render_source("renders", tmp_path / "renders")
    G = demo_generator(0)
    cfg = TeacherConfig.demo(n_samples=8, csanns_outer=1, csanns_proposals=8, csanns_inner=2, proj_steps=3,
                             n_seeds=1, seed_batch=1, prior_samples=200, n_centroids=2, n_control=2,
                             lambda_landm=0.0, interp_layers=(1,), interp_alphas=(0.9,))
    out = tmp_path / "targets"
    stats = job.generate_targets(source, out, G, cfg, "garbin", False, progress=False)
    assert stats["done"] == 2 and finished(out) == ["demo_00000", "demo_00001"]
    w = np.load(out / "latents" / "demo_00001.npy")
    assert w.dtype == np.float32 and w.shape == (G.n_latent, 512)
    with torch.no_grad():
        expected = G.synthesis(torch.from_numpy(w)[None], noise_mode="const")[0].clamp(-1, 1)
    saved = torch.from_numpy(np.array(Image.open(out / "images" / "demo_00001.png"))).permute(2, 0, 1)
    assert (saved.float() / 127.5 - 1 - expected).abs().max() <= 1.5 / 127.5
    meta = json.loads((out / "meta" / "demo_00001.json").read_text())
    assert meta["perceptual"] is False and meta["method"] == "garbin" and -1 <= meta["ssim"] <= 1
    assert job.generate_targets(source, out, G, cfg, "garbin", False, progress=False)["done"] == 0


TINY = ["--seeds", "1", "--steps", "3", "--no_progress", "--set", "n_samples=8", "--set", "csanns_outer=1",
        "--set", "csanns_proposals=8", "--set", "csanns_inner=2", "--set", "prior_samples=200",
        "--set", "n_centroids=2", "--set", "n_control=2", "--set", "lambda_landm=0", "--set", "interp_layers=1",
        "--set", "interp_alphas=0.9"]


def test_script_demo_run_makes_demo_renders_and_is_resumable(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["--out", str(tmp_path), "--no_perceptual", "--limit", "2", "--device", "cpu", *TINY]
    assert generate_targets.main(argv)["done"] == 2
    assert (tmp_path / "demo_renders" / "annotations.json").is_file()
    run_cfg = json.loads((tmp_path / "run.json").read_text())
    assert run_cfg["generator"] == "demo-faces64" and run_cfg["demo"] is True and run_cfg["teacher"]["proj_steps"] == 3
    assert generate_targets.main(argv)["done"] == 0


def test_script_missing_lpips_weights_name_the_file_and_the_demo_option(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"nope\.pth.*--no_perceptual"):
        generate_targets.main(["--out", str(tmp_path), "--lpips_weights", str(tmp_path / "nope.pth"),
                               "--device", "cpu"])
    assert not (tmp_path / "run.json").exists()


def test_killed_process_resumes_to_a_complete_folder(tmp_path):
    make_demo_renders(tmp_path / "renders", n=3, size=64)
    out = tmp_path / "targets"
    argv = [sys.executable, "-m", "render2style.scripts.generate_targets", "--renders", str(tmp_path / "renders"),
            "--out", str(out), "--no_perceptual", "--device", "cpu", *TINY]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:  # kill it as soon as the first item is finished, in the middle of the second
        while proc.poll() is None and not any((out / "meta").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = set(finished(out))
    assert 1 <= len(before) <= 3
    stats = generate_targets.main(argv[3:])
    assert stats["done"] == 3 - len(before) and stats["already_done"] == len(before)
    files = all_files(out)
    assert not [f for f in files if f.endswith(".tmp")]
    assert {Path(f).stem for f in files if f.startswith("latents/")} == set(finished(out)) == {
        "demo_00000", "demo_00001", "demo_00002"}


def test_fitted_noise_is_stored_with_the_latent_and_checked(tmp_path, monkeypatch):
    """A method that fits noise maps (the projector baseline) stores them in noise/<id>.npz; the item is
    finished only while that file is the one its meta recorded."""
    maps = [np.full((1, 4, 4), 0.5, np.float32), np.full((1, 8, 8), -1.0, np.float32)]

    def teacher(method, G, inps, cfg, perceptual, seed=0, **streams):
        return [TeacherResult(torch.zeros(N_LATENT, 512), torch.zeros(3, SIZE, SIZE), {"loss": 0.1},
                              noise=[torch.from_numpy(m) for m in maps]) for _ in inps]
    monkeypatch.setattr(job, "run_teacher_batch", teacher)
    monkeypatch.setattr(job, "resolve_priors", lambda G, cfg, device, seed: cfg)
    run(tmp_path, FakeSource(2), method="projector")
    with np.load(tmp_path / "noise" / "r000.npz") as stored:
        assert sorted(stored.files) == ["noise_0", "noise_1"]
        assert all(np.array_equal(stored[f"noise_{i}"], m) for i, m in enumerate(maps))
    assert "noise_sha256" in json.loads((tmp_path / "meta" / "r000.json").read_text())
    assert job.is_finished(tmp_path, "r000")
    np.savez(tmp_path / "noise" / "r000.npz", noise_0=maps[1])          # another noise: not this item's
    assert not job.is_finished(tmp_path, "r000") and job.is_finished(tmp_path, "r001")
    assert run(tmp_path, FakeSource(2), method="projector")["done"] == 1
    assert job.is_finished(tmp_path, "r000")


def test_run_json_records_every_weights_file_with_its_sha256(tmp_path, monkeypatch):
    import hashlib
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    centroids = tmp_path / "cv_centroids.pt"
    torch.save({"vectors": torch.randn(2, 512, generator=torch.Generator().manual_seed(0))}, centroids)
    out = tmp_path / "targets"
    generate_targets.main(["--out", str(out), "--no_perceptual", "--limit", "1", "--device", "cpu",
                           "--centroids", str(centroids), *TINY])
    weights = json.loads((out / "run.json").read_text())["weights"]
    assert weights == {"centroids": {"path": str(centroids.resolve()),
                                     "sha256": hashlib.sha256(centroids.read_bytes()).hexdigest()}}


def test_the_teacher_gets_each_renders_id_and_flip(tmp_path, fake):
    """Every random stream depends on (seed, render id, flip): the job must pass both for every unit."""
    run(tmp_path, FakeSource(2), flip=True)
    assert sorted((s["render_id"], s["flip"]) for s in fake.streams) == [
        ("r000", False), ("r000", True), ("r001", False), ("r001", True)]


def test_batched_garbin_targets_equal_one_at_a_time(tmp_path, monkeypatch):
    """The demo preset runs DEMO_BATCH renders per teacher run by default; its targets are those of --batch 1
    (up to float rounding: see test_a_batch_of_renders_gets_what_each_gets_alone), each with its own render."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    common = ["--stylegan_weights", "demo-random", "--no_perceptual", "--limit", "3", "--device", "cpu", *TINY]
    generate_targets.main(["--out", str(tmp_path / "default"), *common])
    generate_targets.main(["--out", str(tmp_path / "one"), "--batch", "1", *common])
    rows = {k: {r["id"]: r for r in csv.DictReader(open(tmp_path / k / "metadata.csv"))} for k in ("default", "one")}
    assert sorted(rows["default"]) == sorted(rows["one"]) == ["demo_00000", "demo_00001", "demo_00002"]
    assert job.DEMO_BATCH >= 3 and f"default: {job.DEMO_BATCH} with the demo preset" in " ".join(
        generate_targets.build_parser().format_help().split())
    assert {r["batch"] for r in rows["default"].values()} == {"3"}
    assert {r["batch"] for r in rows["one"].values()} == {"1"}
    latents = {k: {i: np.load(tmp_path / k / "latents" / f"{i}.npy") for i in rows[k]} for k in rows}
    for rid in rows["one"]:
        np.testing.assert_allclose(latents["default"][rid], latents["one"][rid], rtol=0, atol=5e-2)
        assert float(rows["default"][rid]["loss_total"]) == pytest.approx(float(rows["one"][rid]["loss_total"]),
                                                                          rel=2e-2)
    assert not np.allclose(latents["one"]["demo_00000"], latents["one"]["demo_00001"], atol=5e-2)


def test_a_batch_below_one_is_refused(tmp_path, fake):
    with pytest.raises(ValueError, match="batch must be >= 1 renders per teacher run, got 0"):
        job.generate_targets(FakeSource(2), tmp_path, demo_generator(0), TeacherConfig.demo(), "garbin", False,
                             progress=False, batch=0)
