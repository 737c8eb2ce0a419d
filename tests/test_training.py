"""The encoder trainer: Ranger, amortized loss semantics, falling loss, exact resume, NaN stop, checkpoints.

Most tests use ``TinyPSp`` (pSp's interface, a 16x16 conv encoder without BatchNorm and a fixed
linear "generator") and ``ToyItems`` (items with a teacher image different from the input and an
augmentation drawn from the global RNG), so that they take seconds on one CPU thread. One test trains
the real pSp encoder with the demo generator on demo renders and teacher-format targets.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from render2style.options.train_options import TrainOptions
from render2style.training import NonFiniteLossError, Ranger, Trainer
from render2style.training.data import EpochSampler, SeededItems
from render2style.training.objective import EncoderObjective

SIZE, N_LATENT, DIM = 16, 4, 8


class TinyPSp(nn.Module):
    """pSp's interface in a few hundred parameters: codes = encoder(x) + latent_avg -> decoder."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 3, 2, 1),
                                     nn.Flatten(), nn.Linear(4 * (SIZE // 4) ** 2, N_LATENT * DIM))
        self.decoder = nn.Linear(N_LATENT * DIM, 3 * SIZE * SIZE)
        self.decoder.n_latent = N_LATENT
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        self.register_buffer("latent_avg", torch.full((N_LATENT, DIM), 0.1))

    def forward(self, x, resize=True, return_latents=False):
        codes = self.encoder(x).view(-1, N_LATENT, DIM) + self.latent_avg
        images = torch.tanh(self.decoder(codes.flatten(1))).view(-1, 3, SIZE, SIZE)
        return (images, codes) if return_latents else images

    def checkpoint_dict(self):
        return {"state_dict": self.state_dict(), "opts": {"n_styles": N_LATENT},
                "latent_avg": self.latent_avg.clone()}


class ToyItems(Dataset):
    """Renders with teacher targets: 'target' (teacher image) differs from 'input' but is learnable from
    it; a noise augmentation of the input drawn from the global RNG."""

    def __init__(self, n: int, seed: int = 0, has_latent: bool = True, varied: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.inputs = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
        self.targets = -0.5 * self.inputs.flip(-1) + 0.1 * torch.rand(n, 3, SIZE, SIZE, generator=g)
        self.latents = torch.randn(n, N_LATENT, DIM, generator=g) * 0.3
        # varied: every third item has no W+ (like a flip without flipped targets)
        self.has_latent = [has_latent and not (varied and i % 3 == 0) for i in range(n)]
        self.masks = torch.ones(n, 1, SIZE, SIZE)
        if varied:  # face masks of different areas, like renders
            for i in range(n):
                self.masks[i, :, : 4 + (5 * i) % (SIZE - 4)] = 0

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        noise = 0.05 * torch.randn(3, SIZE, SIZE)  # augmentation from the global RNG
        return {"input": self.inputs[i] + noise, "target": self.targets[i], "mask": self.masks[i],
                "latent": self.latents[i], "has_latent": torch.tensor(self.has_latent[i]),
                "flipped": torch.tensor(False), "id": f"toy{i}"}


def toy_opts(exp_dir, *extra):
    args = ["--renders", "unused", "--exp_dir", str(exp_dir), "--device", "cpu", "--batch_size", "4",
            "--test_batch_size", "3", "--workers", "0", "--test_workers", "0", "--lpips_lambda", "0",
            "--id_lambda", "0", "--w_norm_lambda", "0.01", "--learning_rate", "0.01", "--board_interval", "1",
            "--image_interval", "100", "--val_interval", "3", "--save_interval", "3", "--max_steps", "6"]
    return TrainOptions().parse(args + list(extra))


def toy_trainer(opts, n_train=20, n_test=5, net=None):
    return Trainer(opts, net=net or TinyPSp(), datasets=(ToyItems(n_train, 0), ToyItems(n_test, 1)))


def losses(history):
    return [h["loss"] for h in history]


# --- Ranger ------------------------------------------------------------------------------------
def test_ranger_first_step_is_centralized_sgd():
    # RAdam's first steps (fewer than 5 degrees of freedom) are bias-corrected momentum: Δp = -lr·g.
    w = nn.Parameter(torch.randn(3, 4))
    b = nn.Parameter(torch.randn(3))
    w0, b0 = w.detach().clone(), b.detach().clone()
    gw, gb = torch.randn(3, 4), torch.randn(3)
    w.grad, b.grad = gw.clone(), gb.clone()
    Ranger([w, b], lr=0.1).step()
    centered = gw - gw.mean(dim=1, keepdim=True)  # gradient centralization over the fan-in
    torch.testing.assert_close(w.detach(), w0 - 0.1 * centered)
    torch.testing.assert_close(b.detach(), b0 - 0.1 * gb)  # 1-D parameters are not centralized


def test_ranger_lookahead_interpolates_slow_and_fast_weights():
    def run(alpha):
        torch.manual_seed(0)
        p = nn.Parameter(torch.randn(5))
        opt = Ranger([p], lr=0.1, k=3, alpha=alpha)
        for i in range(3):
            p.grad = torch.full((5,), float(i + 1))
            opt.step()
        return p.detach()

    torch.manual_seed(0)
    p0 = torch.randn(5)
    fast = run(1.0)  # alpha 1: the slow weights jump to the fast ones
    torch.testing.assert_close(run(0.5), p0 + 0.5 * (fast - p0))


def test_ranger_state_dict_round_trip_is_exact():
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))

    def steps(net, opt, n, start):
        for i in range(start, start + n):
            x = torch.randn(8, 6, generator=torch.Generator().manual_seed(i))
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()

    a = model()
    opt_a = Ranger(a.parameters(), lr=0.01)
    steps(a, opt_a, 9, 0)

    b = model()
    opt_b = Ranger(b.parameters(), lr=0.01)
    steps(b, opt_b, 4, 0)
    c = model()
    c.load_state_dict(b.state_dict())
    opt_c = Ranger(c.parameters(), lr=0.01)
    opt_c.load_state_dict(opt_b.state_dict())
    steps(c, opt_c, 5, 4)
    for pa, pc in zip(a.parameters(), c.parameters()):
        assert torch.equal(pa, pc)


# --- loss semantics ----------------------------------------------------------------------------
def _batch(n=4, has_latent=True):
    items = ToyItems(n, has_latent=has_latent)
    return {k: (torch.stack([items[i][k] for i in range(n)]) if k != "id" else None)
            for k in ("input", "target", "mask", "latent", "has_latent", "flipped")}


def test_image_loss_compares_with_the_teacher_image_not_the_input(tmp_path):
    opts = toy_opts(tmp_path, "--latent_lambda", "0", "--w_norm_lambda", "0")
    objective = EncoderObjective(opts)
    batch = _batch()
    y_hat = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    loss, logs = objective(y_hat, torch.zeros(4, N_LATENT, DIM), batch, torch.zeros(N_LATENT, DIM))
    assert logs["loss_l2"] == pytest.approx(float(((y_hat - batch["target"]) ** 2).mean()))
    assert logs["loss_l2"] != pytest.approx(float(((y_hat - batch["input"]) ** 2).mean()))


def test_output_is_pooled_to_the_target_resolution(tmp_path):
    opts = toy_opts(tmp_path, "--latent_lambda", "0", "--w_norm_lambda", "0")
    batch = _batch()
    y_big = torch.rand(4, 3, 4 * SIZE, 4 * SIZE)
    _, logs = EncoderObjective(opts)(y_big, torch.zeros(4, N_LATENT, DIM), batch, torch.zeros(N_LATENT, DIM))
    pooled = torch.nn.functional.avg_pool2d(y_big, 4)
    assert logs["loss_l2"] == pytest.approx(float(((pooled - batch["target"]) ** 2).mean()))


def test_latent_loss_ignores_samples_without_a_valid_code(tmp_path):
    # A flipped render without flipped targets comes with has_latent False (and zeros as its code).
    opts = toy_opts(tmp_path, "--l2_lambda", "0", "--w_norm_lambda", "0")
    objective = EncoderObjective(opts)
    batch = _batch()
    batch["has_latent"] = torch.tensor([True, False, True, False])
    batch["latent"][1] = float("nan")
    codes = torch.randn(4, N_LATENT, DIM, requires_grad=True)
    loss, logs = objective(torch.zeros(4, 3, SIZE, SIZE), codes, batch, torch.zeros(N_LATENT, DIM))
    expected = ((codes[[0, 2]] - batch["latent"][[0, 2]]) ** 2).mean()
    assert logs["loss_latent"] == pytest.approx(float(expected.detach()))
    loss.backward()
    assert torch.all(codes.grad[[1, 3]] == 0) and torch.any(codes.grad[0] != 0)


def test_trainer_passes_the_teacher_image_to_the_loss(tmp_path):
    seen = []

    class Spy(EncoderObjective):
        def terms(self, y_hat, latents, batch, latent_avg, ranks=None):
            seen.append((batch["input"].clone(), batch["target"].clone(), batch["id"]))
            return super().terms(y_hat, latents, batch, latent_avg, ranks)

    opts = toy_opts(tmp_path, "--max_steps", "1")
    data = ToyItems(20, 0)
    Trainer(opts, net=TinyPSp(), datasets=(data, ToyItems(5, 1)), objective=Spy(opts)).train()
    _, target, ids = seen[0]
    idx = [int(i[3:]) for i in ids]
    torch.testing.assert_close(target, data.targets[idx])


# --- data order --------------------------------------------------------------------------------
def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_can_start_mid_epoch():
    data = list(range(10))
    s = EpochSampler(data, num_replicas=1, rank=0, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=4)
    assert list(s) == full[4:] and len(s) == 6
    s.set_epoch(3)
    assert list(s) != full
    ranks = [EpochSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    assert sorted(i for r in ranks for _, i in r) == sorted(i for _, i in full)


def test_seeded_items_draw_the_same_augmentation_whatever_the_global_rng():
    items = SeededItems(ToyItems(3), seed=5)
    torch.manual_seed(1)
    a = items[(0, 2)]["input"]
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = items[(0, 2)]["input"]
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left untouched
    assert not torch.equal(a, items[(1, 2)]["input"])  # a new epoch draws anew


# --- training ------------------------------------------------------------------------------------
def test_loss_falls_on_a_tiny_setup(tmp_path):
    opts = toy_opts(tmp_path, "--max_steps", "60", "--val_interval", "60", "--save_interval", "60",
                    "--learning_rate", "0.03")
    history = toy_trainer(opts).train()
    first, last = np.mean(losses(history)[:5]), np.mean(losses(history)[-5:])
    assert last < 0.5 * first


def test_console_and_board_log_the_mean_since_the_last_log(tmp_path, caplog):
    import logging
    import re

    opts = toy_opts(tmp_path, "--board_interval", "3", "--max_steps", "6")
    with caplog.at_level(logging.INFO, logger="render2style.training.trainer"):
        history = toy_trainer(opts).train()
    lines = [r.getMessage() for r in caplog.records if "loss " in r.getMessage() and "step" in r.getMessage()
             and "validation" not in r.getMessage()]
    assert [line.split("  ")[0] for line in lines] == ["step 1/6", "steps 2-3/6", "steps 4-6/6"]
    logged = [float(re.search(r"  loss ([0-9.]+)", line).group(1)) for line in lines]
    expected = [history[0]["loss"], np.mean(losses(history)[1:3]), np.mean(losses(history)[3:6])]
    np.testing.assert_allclose(logged, expected, atol=1e-4)
    assert lines[-1].endswith("ETA 00:00)") and all(re.search(r"s/step, ETA \d\d:\d\d\)$", line) for line in lines)


@pytest.mark.parametrize("workers", [0, 1])
def test_resumed_run_reproduces_the_uninterrupted_loss_trace(tmp_path, workers):
    # 20 train samples / batch 4 = 5 steps per epoch: 6 steps cross an epoch boundary, and the
    # interruption after step 3 is mid-epoch (and mid Lookahead cycle, k = 6).
    extra = ["--workers", str(workers), "--max_steps", "6"]
    uninterrupted = toy_trainer(toy_opts(tmp_path / "a", *extra))
    straight = uninterrupted.train()
    first = toy_trainer(toy_opts(tmp_path / "b", *extra[:2], "--max_steps", "3"))
    part1 = first.train()
    first.close()
    resumed = toy_trainer(toy_opts(tmp_path / "b", *extra))  # the existing exp_dir is resumed
    assert resumed.step == 3
    part2 = resumed.train()
    assert [h["step"] for h in part1 + part2] == list(range(1, 7))
    assert losses(part1 + part2) == losses(straight)  # bitwise equal
    for pa, pb in zip(resumed.net.parameters(), uninterrupted.net.parameters()):
        assert torch.equal(pa, pb)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class NaNAtStep4(EncoderObjective):
        calls = 0

        def terms(self, y_hat, latents, batch, latent_avg, ranks=None):
            loss, values = super().terms(y_hat, latents, batch, latent_avg, ranks)
            NaNAtStep4.calls += 1  # training calls only: validation calls forward
            if NaNAtStep4.calls == 4:
                loss, values = loss * float("nan"), values * float("nan")
            return loss, values

    opts = toy_opts(tmp_path, "--max_steps", "10", "--val_interval", "100")
    trainer = Trainer(opts, net=TinyPSp(), datasets=(ToyItems(20), ToyItems(5, 1)), objective=NaNAtStep4(opts))
    with pytest.raises(NonFiniteLossError, match="step 4.*last good checkpoint"):
        trainer.train()
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert ckpt["resume"]["step"] == 3
    for k, v in trainer.net.state_dict().items():  # no update was applied at step 4
        assert torch.equal(ckpt["state_dict"][k], v) and torch.isfinite(v).all()


def test_checkpoint_holds_psp_layout_plain_opts_and_resume_state(tmp_path):
    opts = toy_opts(tmp_path, "--train_decoder", "False", "--max_steps", "3")
    toy_trainer(opts).train()
    for name in ("latest.pt", "best_model.pt"):
        ckpt = torch.load(tmp_path / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert set(ckpt) >= {"state_dict", "opts", "latent_avg", "step", "best_val_loss"}
        o = ckpt["opts"]
        assert isinstance(o, dict) and o["train_decoder"] is False and o["learning_rate"] == 0.01
        assert o["n_styles"] == N_LATENT  # the model's own options are kept
        assert ckpt["step"] == 3 and ckpt["best_val_loss"] is not None
    r = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)["resume"]
    assert r["step"] == 3 and set(r["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert "state" in r["optimizer"]
    assert "resume" not in torch.load(tmp_path / "checkpoints" / "best_model.pt", weights_only=True)


def test_frozen_decoder_is_not_updated_unless_train_decoder(tmp_path):
    for flag, changed in (("False", False), ("True", True)):
        net = TinyPSp()
        before = net.decoder.weight.detach().clone()
        toy_trainer(toy_opts(tmp_path / flag, "--train_decoder", flag, "--max_steps", "2"), net=net).train()
        assert (not torch.equal(before, net.decoder.weight)) is changed


def test_validation_covers_the_whole_test_split(tmp_path):
    opts = toy_opts(tmp_path, "--max_steps", "1")
    trainer = toy_trainer(opts, n_test=5)
    val = trainer.validate()
    net, data = trainer.net.eval(), ToyItems(5, 1)
    items = SeededItems(data, opts.seed)
    batch = {k: torch.stack([items[(0, i)][k] for i in range(5)]) for k in ("input", "target")}
    with torch.no_grad():
        y = net(batch["input"])
    assert val["loss_l2"] == pytest.approx(float(((y - batch["target"]) ** 2).mean()), rel=1e-5)


# --- the real encoder on the demo world ----------------------------------------------------------
def _demo_world(tmp_path, n=8):
    from render2style.datasets import make_demo_renders
    from render2style.stylegan2 import demo_generator
    from render2style.teacher.job import to_pil, write_target

    renders = tmp_path / "renders"
    make_demo_renders(renders, n, seed=0, size=64)
    G = demo_generator(0)
    targets = tmp_path / "targets"
    with torch.no_grad():
        w_avg = G.mean_latent(1000, seed=0)
        for i in range(n):
            z = torch.randn(1, 512, generator=torch.Generator().manual_seed(i))
            w = (w_avg + 0.5 * (G.mapping(z) - w_avg)).repeat(G.n_latent, 1)
            image = G.synthesis(w[None])[0]
            write_target(targets, f"demo_{i:05d}", w.numpy().astype(np.float32), to_pil(image), {"id": i})
    return renders, targets


def _demo_opts(tmp_path, renders, targets, *extra):
    args = ["--dataset", "renders", "--renders", str(renders), "--targets", str(targets),
            "--exp_dir", str(tmp_path / "exp"), "--stylegan_weights", "demo-random", "--ir_se50_weights", "none",
            "--output_size", "64", "--resolution", "64", "--device", "cpu", "--batch_size", "4",
            "--test_batch_size", "4", "--workers", "0", "--test_workers", "0", "--learning_rate", "1e-3",
            "--lpips_lambda", "0", "--id_lambda", "0", "--board_interval", "1", "--image_interval", "10"]
    opts = TrainOptions().parse(args + list(extra))
    opts.latent_avg_samples = 1000
    return opts


class SmallWPlusEncoder(nn.Module):
    """A few convolutions to W+ offsets (zero-initialized output: codes start at latent_avg)."""

    def __init__(self, n_latent: int):
        super().__init__()
        self.n_latent = n_latent
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 3, 2, 1),
                                 nn.LeakyReLU(0.2), nn.Conv2d(16, 16, 3, 2, 1), nn.Flatten())
        self.out = nn.Linear(16 * 8 * 8, n_latent * 512)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        return self.out(self.net(x)).view(-1, self.n_latent, 512)


def test_loss_falls_on_the_demo_world(tmp_path):
    # Demo renders, teacher-format targets G(w*), EncoderDataset, the demo generator as pSp's decoder;
    # a small encoder in place of IR-SE50 keeps it to seconds on a CPU.
    from render2style.encoders.psp import pSp

    renders, targets = _demo_world(tmp_path)
    opts = _demo_opts(tmp_path, renders, targets, "--max_steps", "30", "--val_interval", "30", "--optim_name", "adam",
                      "--encoder_type", "BackboneEncoderUsingLastLayerIntoWPlus")
    net = pSp(opts)
    net.encoder = SmallWPlusEncoder(net.n_styles)
    history = Trainer(opts, net=net).train()
    first, last = np.mean(losses(history)[:5]), np.mean(losses(history)[-5:])
    assert last < 0.85 * first
    l2 = [h["loss_l2"] for h in history]
    assert np.mean(l2[-5:]) < 0.7 * np.mean(l2[:5])
    assert (tmp_path / "exp" / "logs" / "images" / "train_000010.png").is_file()


def test_real_psp_checkpoint_is_what_encode_loads(tmp_path):
    from render2style.encoders.psp import pSp

    renders, targets = _demo_world(tmp_path, n=4)
    opts = _demo_opts(tmp_path, renders, targets, "--max_steps", "2", "--batch_size", "2",
                      "--encoder_type", "BackboneEncoderUsingLastLayerIntoW", "--learn_in_w", "true")
    trainer = Trainer(opts)
    trainer.train()
    path = tmp_path / "exp" / "checkpoints" / "latest.pt"
    net = pSp.from_checkpoint(path)  # what encode.py loads
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x), trainer.net.eval().encode(x))
    opts_saved = torch.load(path, weights_only=True)["opts"]
    assert opts_saved["learn_in_w"] is True and opts_saved["targets"] == str(targets)


def test_light_demo_encoder_checkpoint_keeps_its_architecture(tmp_path):
    # The demo's GradualStyleEncoder (IR-SE18 body, narrow map2style blocks sized for 64 px) is rebuilt
    # from the checkpoint's opts alone; resuming with other architecture options is refused clearly.
    from render2style.encoders.psp import pSp

    renders, targets = _demo_world(tmp_path, n=4)
    opts = _demo_opts(tmp_path, renders, targets, "--max_steps", "1", "--batch_size", "2",
                      "--encoder_num_layers", "18", "--style_channels", "16")
    trainer = Trainer(opts)
    trainer.train()
    path = tmp_path / "exp" / "checkpoints" / "latest.pt"
    saved = torch.load(path, weights_only=True)["opts"]
    assert (saved["encoder_num_layers"], saved["style_channels"], saved["resolution"]) == (18, 16, 64)
    net = pSp.from_checkpoint(path)
    assert [len(b.convs) // 2 for b in net.encoder.styles] == [2] * 3 + [3] * 4 + [4] * 3
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x), trainer.net.eval().encode(x))
    other = _demo_opts(tmp_path, renders, targets, "--max_steps", "2", "--batch_size", "2",
                       "--encoder_num_layers", "18", "--style_channels", "32")
    with pytest.raises(ValueError, match="latest.pt: its model does not match.*'style_channels': 16"):
        Trainer(other)


def test_demo_targets_come_from_the_garbin_teacher(tmp_path, monkeypatch):
    import argparse

    import render2style.teacher.job as job
    from render2style import train_encoder
    from render2style.datasets.demo_renders import make_demo_renders
    from render2style.teacher import TeacherConfig

    calls = {}
    monkeypatch.setattr(job, "generate_targets", lambda source, out, G, cfg, method, perceptual, **kw: calls.update(
        n=len(source.ids), out=str(out), G=G, cfg=cfg, method=method, perceptual=perceptual))
    make_demo_renders(tmp_path / "renders", 2, seed=0, size=64)
    opts = argparse.Namespace(renders=str(tmp_path / "renders"), targets=str(tmp_path / "targets"), demo_seed=0, seed=0)
    train_encoder._make_demo_targets(opts, "random")
    assert calls["method"] == "garbin" and calls["perceptual"] is False and calls["n"] == 2
    assert calls["cfg"] == TeacherConfig.demo() and calls["cfg"].lambda_landm > 0  # dlib landmark term on
    assert calls["G"].size == 64 and calls["out"] == opts.targets


def test_demo_world_uses_the_face_generator(tmp_path, monkeypatch):
    """No arguments: the shipped face generator decodes, its latent_avg starts the teacher, the targets' run
    names it; ``--demo_generator random`` is the seeded one; a real generator file cannot make demo targets."""
    import render2style.teacher.job as job
    from render2style import train_encoder
    from render2style.stylegan2 import demo_generator
    from render2style.stylegan2.demo import demo_face_generator
    from render2style.training.distributed import DistEnv
    from render2style.training.trainer import build_model

    calls = {}
    monkeypatch.setattr(job, "generate_targets", lambda source, out, G, cfg, method, perceptual, **kw: calls.update(
        G=G, cfg=cfg, name=kw["generator_name"]))
    faces, latent_avg = demo_face_generator()
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    opts = TrainOptions().parse(["--dataset", "renders", "--exp_dir", str(tmp_path / "faces")])
    train_encoder.prepare_demo(opts, env)
    assert opts.stylegan_weights == "demo" and calls["name"] == "demo-faces64"
    assert torch.equal(calls["G"].state_dict()["to_rgb1.conv.weight"], faces.state_dict()["to_rgb1.conv.weight"])
    assert torch.equal(calls["cfg"].w_avg, latent_avg[0])
    net = build_model(opts)
    assert net.opts.demo_generator == "faces" and torch.equal(net.latent_avg[0], latent_avg[0])

    opts = TrainOptions().parse(["--dataset", "renders", "--exp_dir", str(tmp_path / "random"),
                                 "--demo_generator", "random"])
    train_encoder.prepare_demo(opts, env)
    assert opts.stylegan_weights == "demo-random" and calls["name"] == "demo-random" and calls["cfg"].w_avg is None
    assert torch.equal(calls["G"].state_dict()["to_rgb1.conv.weight"],
                       demo_generator(0).state_dict()["to_rgb1.conv.weight"])
    opts = TrainOptions().parse(["--dataset", "renders", "--exp_dir", str(tmp_path / "file"),
                                 "--stylegan_weights", "g.pt"])
    with pytest.raises(SystemExit, match="demo world makes its targets with a demo generator"):
        train_encoder.prepare_demo(opts, env)
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--dataset", "renders", "--demo_generator", "random", "--stylegan_weights", "demo"])


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path, amp):
    trainer = toy_trainer(toy_opts(tmp_path, "--amp", amp, "--max_steps", "3"))
    history = trainer.train()
    assert all(math.isfinite(x) for x in losses(history))
    assert trainer.scaler.is_enabled() is (amp == "fp16")
