"""Fault suite (issue 9): each case is a failure a demanding user hit; each test failed before its fix."""
import multiprocessing
import os
import re
import signal
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from render2style.teacher import TeacherConfig, job

N_LATENT = 4
FAKE_G = SimpleNamespace(size=32, n_latent=N_LATENT, style_dim=512)
FORK = multiprocessing.get_context("fork")


class Source:
    """Renders r000..r(n-1) as records (32x32, a face mask in the middle)."""

    def __init__(self, n):
        self.ids = [f"r{k:03d}" for k in range(n)]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        mask = np.zeros((32, 32), np.float32)
        mask[8:24, 8:24] = 1
        return SimpleNamespace(id=self.ids[i], rgb=np.full((32, 32, 3), i, np.uint8), face_mask=mask,
                               hair_mask=None, landmarks=None, path=f"/data/{self.ids[i]}.png")


def fake_target(log_path, block_on=None):
    """A stand-in for the teacher that appends each item it computes to ``log_path``; on ``block_on`` it
    writes the latent, starts the image's temp file, signals ``<log>.blocked`` and hangs (to be killed)."""
    def targets(G, items, cfg, config, perceptual, shard, device, search_generator=None, encoder_init=None):
        out = []
        for render, _ in items:
            with open(log_path, "a") as f:
                f.write(f"{os.getpid()} {render.id}\n")
            time.sleep(0.02)  # lets concurrent processes interleave; no assertion depends on it
            out.append((np.full((N_LATENT, 512), len(render.id), np.float32), Image.new("RGB", (8, 8)),
                        {"id": render.id}))
        return out

    real_save_image = job.atomic_save_image

    def save_image(image, path):
        if Path(path).stem != block_on:
            return real_save_image(image, path)
        tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".tmp")
        Path(f"{log_path}.blocked").write_text("")
        while True:
            time.sleep(1)
    return targets, save_image


def run_job(out, log_path, block_on=None, **kw):
    target, save_image = fake_target(log_path, block_on)
    job._targets, job.atomic_save_image = target, save_image
    job.resolve_priors = lambda G, cfg, device, seed: cfg
    return job.generate_targets(Source(6), out, FAKE_G, TeacherConfig.demo(), "garbin", False, progress=False, **kw)


def _child(out, log_path, block_on=None, shard=None):
    os.environ.pop("RANK", None), os.environ.pop("WORLD_SIZE", None)
    run_job(out, log_path, block_on, shard=shard)


def computed(log_path):
    return [line.split()[1] for line in Path(log_path).read_text().splitlines()] if Path(log_path).exists() else []


def finished_ids(out):
    return sorted(p.stem for p in (Path(out) / "meta").glob("*.json") if job.is_finished(out, p.stem))


@pytest.fixture
def restore_job(monkeypatch):
    for name in ("_targets", "atomic_save_image", "resolve_priors"):
        monkeypatch.setattr(job, name, getattr(job, name))
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.parametrize("shards", [[None, None], [None, None, None], [None, (1, 2), (0, 2)]])
def test_concurrent_target_jobs_compute_every_item_exactly_once(tmp_path, restore_job, shards):
    out, log_path = tmp_path / "t", tmp_path / "calls.log"
    procs = [FORK.Process(target=_child, args=(out, log_path, None, shard)) for shard in shards]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    done = computed(log_path)
    assert sorted(done) == [f"r{k:03d}" for k in range(6)]  # no item twice, none missing
    assert finished_ids(out) == sorted(done)
    assert not list(out.rglob("*.tmp")) and not list((out / job.CLAIMS).glob("*.lock"))


def _wait_for(path, proc):
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.is_alive() and time.monotonic() < deadline, "the blocked job never got to its item"
        time.sleep(0.02)


def test_a_live_jobs_item_is_left_alone_and_a_killed_jobs_item_is_taken_over(tmp_path, restore_job):
    out, log_a, log_b = tmp_path / "t", tmp_path / "a.log", tmp_path / "b.log"
    a = FORK.Process(target=_child, args=(out, log_a, "r001"))
    a.start()
    try:
        _wait_for(Path(f"{log_a}.blocked"), a)
        # a second job while the first is alive mid-item: it does the rest and touches nothing of r001
        stats = run_job(out, log_b)
        assert "r001" not in computed(log_b) and stats["claimed_elsewhere"] == 1
        assert (out / "latents" / "r001.npy").is_file() and list((out / "images").glob(".r001.png.*.tmp"))
        assert "r001" not in finished_ids(out)
    finally:
        os.kill(a.pid, signal.SIGKILL)
        a.join()
    # after kill -9 the claim is free: the next run takes r001 over and clears the dead job's files
    stats = run_job(out, log_b)
    assert stats["done"] == 1 and computed(log_b).count("r001") == 1
    assert finished_ids(out) == [f"r{k:03d}" for k in range(6)]
    assert not list(out.rglob("*.tmp"))


def test_a_meta_whose_latent_is_gone_or_changed_is_not_finished_and_is_redone(tmp_path, restore_job):
    out, log_path = tmp_path / "t", tmp_path / "calls.log"
    run_job(out, log_path)
    (out / "latents" / "r001.npy").unlink()
    np.save(out / "latents" / "r002.npy", np.zeros((N_LATENT, 512), np.float32))  # not what meta recorded
    stats = run_job(out, log_path)
    assert stats["done"] == 2 and sorted(computed(log_path)[6:]) == ["r001", "r002"]
    assert finished_ids(out) == [f"r{k:03d}" for k in range(6)]


def test_resumed_target_job_refuses_another_seed_or_flip(tmp_path, restore_job):
    out, log_path = tmp_path / "t", tmp_path / "calls.log"
    run_job(out, log_path, seed=3)
    with pytest.raises(ValueError, match=r"run\.json.*seed: 3 there, 4 now \(--seed\)"):
        run_job(out, log_path, seed=4)
    with pytest.raises(ValueError, match=r"flip: False there, True now \(--flip\)"):
        run_job(out, log_path, seed=3, flip=True)


# --- encode.py: outputs never collide, failures are in the exit status ---------------------------------
@pytest.fixture(scope="module")
def net():
    import torch

    from render2style.encoders.psp import pSp
    torch.manual_seed(0)
    return pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 32,
                "encoder_num_layers": 18, "style_channels": 16, "latent_avg_samples": 512}).eval()


def encode(net, *args):
    from render2style.encode import run
    from render2style.options.encode_options import EncodeOptions
    return run(EncodeOptions().parse(["--checkpoint", "unused.pt", "--workers", "0", *map(str, args)]), net)


def face_png(path, value, mode="RGBA", size=40):
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = value
    rgba[8:32, 8:32, 3] = 255
    Image.fromarray(rgba).convert(mode).save(path)


def test_inputs_sharing_a_stem_get_their_own_outputs(net, tmp_path):
    for sub, value in (("a", 40), ("b", 200)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        face_png(tmp_path / "in" / sub / "x.png", value)
    assert encode(net, "--input", tmp_path / "in" / "*" / "x.png", "--out", tmp_path / "out") == 0
    a, b = (np.asarray(Image.open(tmp_path / "out" / "images" / s / "x.png")) for s in "ab")
    assert not np.array_equal(a, b)
    assert {p.relative_to(tmp_path / "out" / "latents").as_posix() for p in (tmp_path / "out").rglob("*.npy")} == {
        "a/x.npy", "b/x.npy"}


def test_inputs_that_would_share_outputs_are_refused_by_name(net, tmp_path):
    (tmp_path / "in").mkdir()
    face_png(tmp_path / "in" / "x.png", 40)
    face_png(tmp_path / "in" / "x.bmp", 40)
    with pytest.raises(ValueError, match=r"x: .*x\.bmp, .*x\.png"):
        encode(net, "--input", tmp_path / "in", "--out", tmp_path / "out")


def test_encode_exits_1_when_any_or_every_input_failed(net, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    assert encode(net, "--input", tmp_path / "bad", "--out", tmp_path / "o1") == 1
    face_png(tmp_path / "bad" / "good.png", 40)
    assert encode(net, "--input", tmp_path / "bad", "--out", tmp_path / "o2", "--on_error", "skip") == 1
    assert (tmp_path / "o2" / "latents" / "good.npy").is_file()  # skip still encodes the rest


# --- the same encoder input at training and at inference -------------------------------------------
def _layout(folder, kind):
    """One render (id 000001) in the layout ``kind``, with a face mask that is not all ones."""
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:40, 12:36] = 255
    if kind == "rgba":
        Image.fromarray(np.dstack([rgb, mask])).save(folder / "000001.png")
    elif kind == "mask_file":
        Image.fromarray(rgb).save(folder / "000001.png")
        Image.fromarray(mask).save(folder / "000001_mask.png")
    else:  # Face Synthetics: class 1 (skin) inside, 0 (background) outside
        Image.fromarray(rgb).save(folder / "000001.png")
        Image.fromarray((mask > 0).astype(np.uint8)).save(folder / "000001_seg.png")
    return folder


@pytest.mark.parametrize("kind,dataset", [("rgba", "renders"), ("mask_file", "renders"),
                                          ("segmentation", "facesynthetics")])
def test_training_and_inference_build_the_same_4_channel_input(tmp_path, kind, dataset):
    from render2style.datasets import EncoderDataset, build_render_source
    from render2style.inference.inputs import ImageInputs, list_images
    folder = _layout(tmp_path / kind, kind)
    train = EncoderDataset(build_render_source(dataset, folder), None, "test", test_fraction=1.0, resolution=32,
                           input_nc=4, n_latent=N_LATENT)[0]["input"]
    infer = ImageInputs(list_images(str(folder)), 32, input_nc=4)[0]["image"]
    assert (train[3] < 0).any()  # the mask channel carries a real mask
    assert infer.shape == train.shape and np.array_equal(infer.numpy(), train.numpy())


# --- masks from the right place; too-small images --------------------------------------------------
def test_a_palette_render_without_transparency_needs_a_mask_file(tmp_path):
    from render2style.datasets import build_render_source
    face_png(tmp_path / "r.png", 90, mode="RGB")
    Image.open(tmp_path / "r.png").convert("P", palette=Image.ADAPTIVE).save(tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"r\.png: mode RGB has no alpha and there is no r_mask\.png"):
        build_render_source("renders", tmp_path)[0]


def test_a_palette_render_with_transparency_uses_it_as_the_mask(tmp_path):
    from render2style.datasets import build_render_source
    face_png(tmp_path / "r.png", 90)
    Image.open(tmp_path / "r.png").convert("P", palette=Image.ADAPTIVE).save(tmp_path / "r.png", transparency=0)
    face = build_render_source("renders", tmp_path)[0].face_mask
    assert 0 < face.mean() < 1


def test_images_below_the_minimum_size_are_refused_by_name(tmp_path):
    from render2style.datasets import build_render_source
    face_png(tmp_path / "tiny.png", 90, size=1)
    with pytest.raises(ValueError, match=r"tiny\.png: image is 1x1, expected at least 32 px"):
        build_render_source("renders", tmp_path)[0]


# --- finite or nothing: gradients checked after backward, weights checked before a save ---------------
def _nan_grads_at(net, steps):
    """Make the first encoder parameter's gradient NaN at the given (1-based) backward calls."""
    calls = []
    param = next(net.encoder.parameters())
    param.register_hook(lambda g: (calls.append(1), g * float("nan") if len(calls) in steps else g)[1])
    return calls


def test_a_non_finite_gradient_with_a_finite_loss_skips_the_update(tmp_path):
    import torch
    from test_training import TinyPSp, ToyItems, toy_opts

    from render2style.training import Trainer
    net = TinyPSp()
    _nan_grads_at(net, {3})
    trainer = Trainer(toy_opts(tmp_path, "--max_steps", "2", "--val_interval", "100"), net=net,
                      datasets=(ToyItems(20), ToyItems(5, 1)))
    trainer.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.opts.max_steps = 3
    trainer.train()
    assert trainer.skipped_steps == 1 and trainer.step == 3
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # step 3 changed nothing
    trainer.opts.max_steps = 6
    history = trainer.train()
    assert all(np.isfinite(h["loss"]) for h in history)
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert ckpt["resume"]["skipped_steps"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_non_finite_gradients_every_step_stop_with_the_step_numbers(tmp_path, monkeypatch):
    from test_training import TinyPSp, ToyItems, toy_opts

    from render2style.training import NonFiniteLossError, Trainer
    from render2style.training import trainer as trainer_module
    monkeypatch.setattr(trainer_module, "MAX_SKIPPED_STEPS", 3)
    net = TinyPSp()
    _nan_grads_at(net, set(range(1, 100)))
    trainer = Trainer(toy_opts(tmp_path, "--max_steps", "10", "--save_interval", "1", "--val_interval", "100"),
                      net=net, datasets=(ToyItems(20), ToyItems(5, 1)))
    with pytest.raises(NonFiniteLossError, match="3 steps in a row \\(steps 1-3"):
        trainer.train()


def test_non_finite_weights_are_never_saved(tmp_path):
    import torch
    from test_training import TinyPSp, ToyItems, toy_opts

    from render2style.training import NonFiniteLossError, Trainer
    net = TinyPSp()
    trainer = Trainer(toy_opts(tmp_path), net=net, datasets=(ToyItems(20), ToyItems(5, 1)))
    with torch.no_grad():
        net.decoder.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="latest.pt: not written, the weights are not finite"):
        trainer.save("latest.pt")
    assert not (tmp_path / "checkpoints" / "latest.pt").exists()


# --- bad data found at start-up, before any compute --------------------------------------------------
def _render_folder(folder, n=4, empty=(), broken=()):
    folder.mkdir()
    for k in range(n):
        path = folder / f"r{k:03d}.png"
        if k in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            face_png(path, 30 * k)
            if k in empty:
                rgba = np.asarray(Image.open(path)).copy()
                rgba[..., 3] = 0
                Image.fromarray(rgba).save(path)
    return folder


def test_an_unreadable_render_stops_training_before_the_first_step_naming_it(tmp_path):
    from render2style.options.train_options import TrainOptions
    from render2style.training.trainer import build_datasets
    renders = _render_folder(tmp_path / "renders", n=6, broken={2})
    opts = TrainOptions().parse(["--renders", str(renders), "--exp_dir", str(tmp_path / "exp"), "--resolution", "32"])
    with pytest.raises(ValueError, match=r"1 of 6 renders are unusable \(r002: .*r002\.png: not a readable image"):
        build_datasets(opts, N_LATENT)
    opts.skip_corrupt = True
    train, test = build_datasets(opts, N_LATENT)
    assert sorted(train.ids + test.ids) == ["r000", "r001", "r003", "r004", "r005"]


def test_an_empty_face_mask_is_named_and_skippable_in_a_target_job(tmp_path, restore_job):
    from render2style.datasets import build_render_source
    source = build_render_source("renders", _render_folder(tmp_path / "renders", empty={1}))
    out, log_path = tmp_path / "t", tmp_path / "calls.log"
    target, save_image = fake_target(log_path)
    job._targets, job.resolve_priors = target, lambda G, cfg, device, seed: cfg

    def run(**kw):
        return job.generate_targets(source, out, FAKE_G, TeacherConfig.demo(), "garbin", False, progress=False, **kw)
    with pytest.raises(ValueError, match=r"r001\.png: the face mask is empty.*--skip_corrupt"):
        run()
    assert computed(log_path) == []  # nothing was spent before the error
    stats = run(skip_corrupt=True)
    assert stats["skipped_corrupt"] == 1 and finished_ids(out) == ["r000", "r002", "r003"]


# --- every file named: what was expected, what was found, no advice to disable weights_only -------------
class _Payload:
    """Unpickling this would create ``marker``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _payload_file(tmp_path, name):
    import torch
    path, marker = tmp_path / name, tmp_path / f"{name}.ran"
    torch.save({"features.0.weight": _Payload(marker)}, path)
    return path, marker


def _loaders():
    from render2style.criteria.id_loss import load_ir_se50
    from render2style.criteria.lpips_loss import load_backbone_state_dict
    from render2style.stylegan2 import load_generator
    from render2style.training.checkpointing import load_checkpoint
    return {"lpips": (lambda p: load_backbone_state_dict(p, "alex"), "alexnet weights"),
            "identity": (load_ir_se50, "IR-SE50"), "generator": (load_generator, "StyleGAN2"),
            "training checkpoint": (load_checkpoint, "training checkpoint")}


@pytest.mark.parametrize("kind", ["lpips", "identity", "generator", "training checkpoint"])
def test_a_code_carrying_pickle_is_refused_by_name_and_nothing_runs(tmp_path, kind):
    load, expected = _loaders()[kind]
    path, marker = _payload_file(tmp_path, "weights.pt")
    with pytest.raises(ValueError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "needs getattr to load, which is refused" in message
    assert "weights_only" not in message and "truncated" not in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["lpips", "identity", "generator", "training checkpoint"])
def test_a_truncated_weights_file_is_named(tmp_path, kind):
    import torch
    load, expected = _loaders()[kind]
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=rf"weights\.pt: expected .*{expected}.*truncated or corrupt"):
        load(path)


def test_a_latent_avg_of_the_wrong_row_count_names_the_checkpoint(net, tmp_path):
    import torch

    from render2style.encoders.psp import pSp
    ckpt = net.checkpoint_dict()
    ckpt["latent_avg"] = torch.zeros(3, 512)
    torch.save(ckpt, tmp_path / "enc.pt")
    with pytest.raises(ValueError, match=r"enc\.pt: latent_avg has 3 rows, expected 1 or 10"):
        pSp.from_checkpoint(tmp_path / "enc.pt")


def test_an_object_array_latent_in_evaluate_is_named(tmp_path):
    from render2style.datasets.targets import load_latent
    np.save(tmp_path / "x.npy", np.array([{"w": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"x\.npy: expected a float W\+ code"):
        load_latent(tmp_path / "x.npy")


def test_a_corrupt_dlib_predictor_is_named(tmp_path):
    pytest.importorskip("dlib")
    from render2style.alignment.landmarks import DlibLandmarks
    (tmp_path / "predictor.dat").write_bytes(b"not a dlib model")
    with pytest.raises(ValueError, match=r"predictor\.dat: expected dlib's 68-point shape predictor"):
        DlibLandmarks(tmp_path / "predictor.dat")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), OSError("5120 requested and 5088 written")])
def test_a_full_disk_is_reported_with_the_path_and_no_temp_file_stays(tmp_path, monkeypatch, error):
    import shutil

    from render2style.utils import io
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=1, used=1, free=0))

    def full(array, path):
        io._atomic_write(path, lambda f: (f.write(b"x" * 100), (_ for _ in ()).throw(error)))
    with pytest.raises(OSError, match=r"out\.npy: no space left on device") as info:
        full(None, tmp_path / "out.npy")
    assert info.value.errno == 28 and list(tmp_path.iterdir()) == []


def test_temp_files_of_interrupted_checkpoint_saves_are_swept_at_start_up(tmp_path):
    from test_training import TinyPSp, ToyItems, toy_opts

    from render2style.training import Trainer
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    (ckpt_dir / ".latest.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    Trainer(toy_opts(tmp_path), net=TinyPSp(), datasets=(ToyItems(20), ToyItems(5, 1)))
    assert list(ckpt_dir.iterdir()) == []


# --- TensorBoard after a resume --------------------------------------------------------------------
def test_a_resumed_run_logs_each_step_once_on_the_board(tmp_path):
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_training import TinyPSp, ToyItems, toy_opts

    from render2style.training import Trainer

    def train(max_steps):
        trainer = Trainer(toy_opts(tmp_path, "--max_steps", str(max_steps), "--val_interval", "100"),
                          net=TinyPSp(), datasets=(ToyItems(20), ToyItems(5, 1)))
        trainer.train()
        trainer.close()
    train(3)
    shutil.copy(tmp_path / "checkpoints" / "latest.pt", tmp_path / "step3.pt")
    train(6)                                                                   # the run goes on to step 6 ...
    shutil.copy(tmp_path / "step3.pt", tmp_path / "checkpoints" / "latest.pt")  # ... and dies; only step 3 saved
    train(6)                                                                   # the resumed run redoes 4-6
    board = EventAccumulator(str(tmp_path / "logs"))
    board.Reload()
    assert [e.step for e in board.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]


# --- options validated at parse time, naming the option ---------------------------------------------
def _parse_error(parse, argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


ENCODE = ["--checkpoint", "c.pt", "--input", "in", "--out", "out"]
TRAIN = ["--renders", "r", "--exp_dir", "e"]


@pytest.mark.parametrize("argv,message", [
    (ENCODE + ["--latent_mask", "9-5"], r"--latent_mask: '9-5': the range '9-5' is empty"),
    (ENCODE + ["--latent_mask", "a-b"], r"--latent_mask: 'a-b': 'a-b' is not a 0-based layer index"),
    (ENCODE + ["--latent_mask=-3"], r"--latent_mask: '-3': '-3' is not a 0-based layer index"),
    (ENCODE + ["--interp_layers", "4-x"], r"--interp_layers: '4-x'"),
    (ENCODE + ["--batch_size", "0"], r"--batch_size/--test_batch_size: expected an integer >= 1, got 0"),
])
def test_bad_encode_options_are_named_at_parse_time(argv, message, capsys):
    from render2style.options.encode_options import EncodeOptions
    assert re.search(message, _parse_error(EncodeOptions().parse, argv, capsys))


@pytest.mark.parametrize("argv,message", [
    (TRAIN + ["--save_interval", "0"], r"--save_interval: expected an integer >= 1, got 0"),
    (TRAIN + ["--max_steps", "0"], r"--max_steps: expected an integer >= 1, got 0"),
    (TRAIN + ["--max_steps", "-5"], r"--max_steps: expected an integer >= 1, got -5"),
    (TRAIN + ["--val_interval", "0"], r"--val_interval: expected an integer >= 1"),
    (TRAIN + ["--learning_rate", "0"], r"--learning_rate: expected a number > 0"),
    (TRAIN + ["--l2_lambda", "-1"], r"--l2_lambda: expected a number >= 0"),
])
def test_bad_train_options_are_named_at_parse_time(argv, message, capsys):
    from render2style.options.train_options import TrainOptions
    assert re.search(message, _parse_error(TrainOptions().parse, argv, capsys))


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], r"--seeds: expected an integer >= 1, got 0"),
    (["--steps", "-1"], r"--steps: expected an integer >= 1, got -1"),
    (["--limit", "-1"], r"--limit: expected an integer >= 1, got -1"),
    (["--set", "n_samples=abc"], r"--set: --set 'n_samples=abc': expected an integer"),
    (["--set", "n_samples=0"], r"--set: TeacherConfig.n_samples must be an integer >= 1, got 0"),
])
def test_bad_target_job_options_are_named_at_parse_time(argv, message, capsys):
    from render2style.scripts.generate_targets import build_parser
    assert re.search(message, _parse_error(build_parser().parse_args, ["--out", "o", *argv], capsys))


def test_interp_layers_outside_the_generator_name_the_option_before_any_work(net, tmp_path):
    (tmp_path / "in").mkdir()
    face_png(tmp_path / "in" / "x.png", 40)
    with pytest.raises(ValueError, match=r"--interp_layers '40-50': layers \[40, .*outside 0\.\.9"):
        encode(net, "--input", tmp_path / "in", "--out", tmp_path / "out", "--interpolate", "--interp_layers", "40-50")
    assert not (tmp_path / "out" / "latents").exists() or not list((tmp_path / "out" / "latents").iterdir())


# --- small generators: every encoder parameter is used (DDP refuses unused ones) ---------------------
@pytest.mark.parametrize("n_styles", [3, 7, 10])
def test_every_encoder_parameter_gets_a_gradient(n_styles):
    import torch

    from render2style.encoders.psp_encoders import GradualStyleEncoder
    enc = GradualStyleEncoder(18, n_styles=n_styles, resolution=32, style_channels=8)
    enc(torch.randn(2, 3, 32, 32)).square().mean().backward()
    unused = [name for name, p in enc.named_parameters() if p.grad is None]
    assert unused == []
