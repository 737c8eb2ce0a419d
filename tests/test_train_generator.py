"""StyleGAN2 training (``r2s-train-generator``): loss terms against hand computations, EMA, ADA, augmentation,
freezing, exact resume, checkpoints every tool loads, learning on a tiny dataset, the identity-consistency hook.

Networks are 16² with 16 feature maps and a 16-d W (about 20k parameters each), datasets a few constant-colour
images: an iteration takes a few hundredths of a second on one CPU thread.
"""
import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from render2style.generator_training.augment import AdaAugment, AdaController, DiffAugment, diff_augment
from render2style.generator_training.ema import ema_beta, update_ema
from render2style.generator_training.losses import (
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_adam_hyperparameters,
    path_length_penalty,
    path_lengths,
    r1_penalty,
)
from render2style.generator_training.trainer import RESUME_KEY, GeneratorTrainer
from render2style.options.generator_options import GeneratorTrainOptions, default_r1_gamma
from render2style.stylegan2 import Generator, load_discriminator, load_generator

SIZE = 16
TINY = ["--size", str(SIZE), "--style_dim", "16", "--n_mlp", "2", "--channel_max", "16", "--channel_multiplier", "1"]
RED, BLUE = torch.tensor([0.8, -0.9, -0.8]), torch.tensor([-0.8, -0.9, 0.8])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TwoColours(Dataset):
    """Constant red and blue images, alternating (their mean colour is (0, −0.9, 0))."""

    def __init__(self, n: int = 8):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (RED if i % 2 == 0 else BLUE).view(3, 1, 1).expand(3, SIZE, SIZE).clone()


def options(tmp_path, iterations, *extra, batch=4):
    return GeneratorTrainOptions().parse(
        ["--data", str(tmp_path / "unused"), "--exp_dir", str(tmp_path / "run"), "--batch", str(batch),
         "--workers", "0", "--kimg", str(iterations * batch / 1000), "--tick_kimg", "1000", "--snapshot_kimg",
         "1000", "--n_samples", "4", *TINY, *extra])


def trainer(tmp_path, iterations, *extra, dataset=None, consistency=None, batch=4):
    return GeneratorTrainer(options(tmp_path, iterations, *extra, batch=batch), dataset=dataset or TwoColours(),
                            consistency=consistency)


# --- loss terms ------------------------------------------------------------------------------------------
def test_logistic_losses_are_the_softplus_formulas():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected_d = (sp(0.5) + sp(-3.0)) / 2 + (sp(-2.0) + sp(1.0)) / 2
    assert d_logistic_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert g_nonsaturating_loss(fake).item() == pytest.approx((sp(-0.5) + sp(3.0)) / 2, rel=1e-6)


def test_r1_is_the_squared_gradient_norm_of_a_known_discriminator():
    # D(x) = Σ a·x + ½ c Σ x²  ->  ∇D = a + c·x, R1 = mean_b ‖a + c·x_b‖²
    torch.manual_seed(0)
    a, c = torch.randn(3, 4, 4), 0.7
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * a).flatten(1).sum(1, keepdim=True) + 0.5 * c * x.pow(2).flatten(1).sum(1, keepdim=True)
    expected = (a + c * x.detach()).pow(2).flatten(1).sum(1).mean()
    r1 = r1_penalty(logits, x)
    assert r1.item() == pytest.approx(expected.item(), rel=1e-5)
    (g,) = torch.autograd.grad(r1, x)          # the penalty back-propagates: d/dx mean‖a + c x‖² = 2c(a + c x)/B
    assert torch.allclose(g, 2 * c * (a + c * x.detach()) / 5, atol=1e-5)


def test_path_length_of_a_linear_generator_is_the_norm_of_its_transposed_jacobian():
    # images = A·w+ (per sample, flattened): J^T y = A^T y, length = sqrt(mean over layers Σ_dims (A^T y)²)
    torch.manual_seed(0)
    b, n_latent, dim, h = 3, 4, 5, 4
    A = torch.randn(3 * h * h, n_latent * dim)
    w = torch.randn(b, n_latent, dim, requires_grad=True)
    images = (w.flatten(1) @ A.t()).view(b, 3, h, h)
    y = torch.randn(b, 3, h, h)
    lengths = path_lengths(images, w, noise=y)
    jt_y = (y.flatten(1) @ A).view(b, n_latent, dim)
    expected = jt_y.pow(2).sum(2).mean(1).sqrt()
    assert torch.allclose(lengths, expected, atol=1e-5)
    penalty, new_mean = path_length_penalty(lengths, torch.tensor(2.0), decay=0.01)
    a = 2.0 + 0.01 * (expected.mean() - 2.0)
    assert new_mean.item() == pytest.approx(a.item(), rel=1e-6)
    assert penalty.item() == pytest.approx((expected - a).pow(2).mean().item(), rel=1e-5)


def test_lazy_regularization_corrects_adam_lr_and_betas():
    lr, betas = lazy_adam_hyperparameters(2e-3, (0.0, 0.99), 16)
    assert lr == pytest.approx(2e-3 * 16 / 17) and betas[1] == pytest.approx(0.99 ** (16 / 17))
    assert lazy_adam_hyperparameters(2e-3, (0.0, 0.99), 0) == (2e-3, (0.0, 0.99))


def test_ema_follows_the_half_life_formula():
    beta = ema_beta(batch_size=32, half_life_kimg=10, cur_nimg=10 ** 6)
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(32, 10, cur_nimg=1000, rampup=0.05) == pytest.approx(0.5 ** (32 / 50))  # 1000·0.05 < 10k
    torch.manual_seed(0)
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, model, 0.9)
    for p_ema, p0, p in zip(ema.parameters(), before, model.parameters()):
        assert torch.allclose(p_ema, 0.9 * p0 + 0.1 * p.detach(), atol=1e-7)
    # after 10 kimg at batch 32 the old weights keep half their weight
    ema.weight.data.fill_(1.0)
    model.weight.data.fill_(0.0)
    for _ in range(round(10_000 / 32)):
        update_ema(ema, model, beta)
    assert ema.weight.mean().item() == pytest.approx(0.5, abs=0.01)


# --- augmentation ----------------------------------------------------------------------------------------
def test_ada_at_p_zero_is_the_identity_and_at_p_one_changes_every_image_differentiably():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    assert torch.equal(AdaAugment(0.0)(x), x)
    x.requires_grad_(True)
    y = AdaAugment(1.0)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert ((y - x).abs().flatten(1).amax(1) > 1e-3).all()
    (g,) = torch.autograd.grad(y.square().sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_ada_geometric_resampling_stays_within_the_input_range():
    torch.manual_seed(1)
    x = torch.rand(16, 3, 16, 16) * 1.6 - 0.8
    y = AdaAugment(1.0)._geometric(x, 1.0)
    assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5
    # the colour transforms keep a grey image grey only under luma-preserving steps: their matrices are finite
    z = AdaAugment(1.0)._colour(x, 1.0)
    assert z.shape == x.shape and torch.isfinite(z).all()


def test_ada_probability_scales_how_many_images_change():
    torch.manual_seed(2)
    x = torch.rand(400, 3, 8, 8) * 2 - 1
    changed = lambda p: ((AdaAugment(p)(x) - x).abs().flatten(1).amax(1) > 1e-4).float().mean().item()  # noqa: E731
    low, high = changed(0.05), changed(0.5)
    # 12 transformations, each with p (rotations with 1 − √(1 − p) twice): P(unchanged) ≈ (1 − p)^11
    assert 0.3 < low < 0.6 and high > 0.99


def test_diffaugment_keeps_shapes_and_gradients_and_cutout_zeroes_at_most_a_quarter():
    torch.manual_seed(0)
    x = (torch.rand(4, 3, 16, 16) + 0.5).requires_grad_(True)        # strictly positive: zeros come from cutout
    y = diff_augment(x, "cutout")
    assert y.shape == x.shape
    zero_fraction = (y == 0).all(1).float().mean(dim=(1, 2))
    assert ((zero_fraction >= 1 / 16) & (zero_fraction <= 1 / 4)).all()   # a half-size square, cut at borders
    y = DiffAugment("color,translation,cutout")(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        diff_augment(x, "colour")


def _overfit_discriminator(reals):
    from render2style.stylegan2 import Discriminator
    torch.manual_seed(0)
    D = Discriminator(SIZE, channel_multiplier=1, channel_max=16)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    for _ in range(40):
        loss = d_logistic_loss(D(reals), D(torch.rand_like(reals) * 2 - 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D


def test_ada_p_rises_for_an_overfitting_discriminator_and_falls_for_one_that_is_not():
    reals = torch.stack([TwoColours()[i] for i in range(4)])
    overfit = _overfit_discriminator(reals)
    with torch.no_grad():
        confident = overfit(reals)                              # the training reals: r_t = 1 > 0.6
        torch.manual_seed(3)
        unsure = overfit(torch.rand_like(reals) * 2 - 1)        # images it does not take for reals: r_t < 0.6
    assert (confident > 0).all() and (unsure < 0).float().mean() > 0.5
    for logits, direction in ((confident, 1), (unsure, -1)):
        ada = AdaController(AdaAugment(0.5), target=0.6, interval=2, speed_kimg=1.0)
        for _ in range(4):
            ada.accumulate(logits.sign().sum(), logits.shape[0])
        # two adjustments of 8 images each: 0.5 ± 2·8/1000
        assert float(ada.augment.p) == pytest.approx(0.5 + direction * 0.016, abs=1e-6)


def test_ada_p_rises_while_training_on_two_images(tmp_path):
    t = trainer(tmp_path, 40, "--augment", "ada", "--ada_kimg", "1", "--ada_interval", "2",
                dataset=TwoColours(2), batch=2)
    history = t.train()
    assert history[-1]["augment_p"] > 0.01           # D tells the two reals apart from fakes: r_t > 0.6
    assert t.ada.last_rt > 0.6


# --- the loop --------------------------------------------------------------------------------------------
def _mean_colour_error(t):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        images = t.G.synthesis(t.sample_wplus(t.G, 64), noise_mode="const")
    return (images.mean((0, 2, 3)) - (RED + BLUE) / 2).norm().item()


def test_a_short_run_moves_the_samples_colour_toward_the_data(tmp_path):
    t = trainer(tmp_path, 60, "--augment", "none")
    before = _mean_colour_error(t)
    history = t.train()
    after = _mean_colour_error(t)
    assert after < 0.5 * before, (before, after)
    late = history[-10:]
    assert sum(r["real_score"] - r["fake_score"] for r in late) / len(late) > 1.0   # D separates them
    assert any("r1" in r for r in history) and any("pl_penalty" in r for r in history)


class Recording(GeneratorTrainer):
    """Records the loss of every optimizer step, with which optimizer took it."""

    def _optimize(self, loss, optim, params):
        self.steps_taken.append(("g" if optim is self.g_optim else "d", loss.item()))
        super()._optimize(loss, optim, params)


def test_lazy_regularizers_are_weighted_by_their_interval_and_adam_is_corrected(tmp_path):
    o = options(tmp_path, 1, "--r1_gamma", "0.4", "--r1_every", "5", "--pl_weight", "3", "--pl_every", "7")
    t = Recording(o, dataset=TwoColours())
    t.steps_taken = []
    logs = {k: float(v) for k, v in t.train_step(torch.stack([TwoColours()[i] for i in range(4)])).items()}
    # iteration 0 runs all four phases: D main, R1, G main, path length
    assert [who for who, _ in t.steps_taken] == ["d", "d", "g", "g"]
    assert t.steps_taken[0][1] == pytest.approx(logs["d_loss"], rel=1e-6)
    assert t.steps_taken[1][1] == pytest.approx(0.4 / 2 * 5 * logs["r1"], rel=1e-5)
    assert t.steps_taken[2][1] == pytest.approx(logs["g_loss"], rel=1e-6)
    assert t.steps_taken[3][1] == pytest.approx(3 * 7 * logs["pl_penalty"], rel=1e-5)
    assert t.d_optim.param_groups[0]["lr"] == pytest.approx(2e-3 * 5 / 6)
    assert t.g_optim.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (7 / 8))


def test_frozen_mapping_and_torgb_do_not_change_while_the_rest_does(tmp_path):
    torch.manual_seed(0)
    G = Generator(SIZE, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
    ckpt = tmp_path / "start.pt"
    torch.save({"g_ema": G.state_dict(), "latent_avg": torch.zeros(1, 16)}, ckpt)   # no 'd': a fresh D
    t = trainer(tmp_path, 8, "--ckpt", str(ckpt), "--freeze_mapping", "--freeze_torgb", "--augment", "none")
    start = {k: v.clone() for k, v in G.state_dict().items()}
    t.train()
    after = t.G.state_dict()
    frozen = [k for k in start if k.startswith(("style.", "to_rgb1.", "to_rgbs."))]
    trained = [k for k in start if k.startswith(("conv1.", "convs.")) and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(after[k], start[k]) for k in frozen)
    assert all(not torch.equal(after[k], start[k]) for k in trained)
    assert all(not p.requires_grad for n, p in t.G.named_parameters() if n in frozen)


def test_resumed_run_reproduces_the_loss_trace_exactly(tmp_path):
    extra = ["--augment", "ada", "--augment_p", "0.3", "--ada_interval", "2", "--ada_kimg", "1",
             "--r1_every", "3", "--pl_every", "2", "--r1_gamma", "0.5", "--ema_rampup", "0.05"]
    uninterrupted = trainer(tmp_path / "full", 10, *extra)
    full = uninterrupted.train()
    part = trainer(tmp_path / "split", 6, *extra)
    first = part.train()
    part.close()
    resumed = trainer(tmp_path / "split", 10, *extra)
    assert resumed.step == 6 and resumed.cur_nimg == 24
    second = resumed.train()
    assert [r["step"] for r in second] == list(range(7, 11))
    assert first + second == full
    for a, b in zip(resumed.G_ema.state_dict().values(), uninterrupted.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert float(resumed.augment.p) == float(uninterrupted.augment.p)


def test_checkpoint_is_a_rosinality_training_checkpoint_every_tool_loads(tmp_path):
    t = trainer(tmp_path, 4)
    t.train()
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert {"g", "g_ema", "d", "g_optim", "d_optim", "latent_avg", RESUME_KEY} <= set(ckpt)
    G, latent_avg = load_generator(path, size=SIZE)
    assert latent_avg.shape == (1, 16)
    w = torch.randn(2, G.n_latent, 16)
    with torch.no_grad():
        assert torch.equal(G.synthesis(w), t.G_ema.synthesis(w))
    D = load_discriminator(path)
    x = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(D(x), t.D.eval()(x))
    assert (tmp_path / "run" / "logs" / "images" / "reals.png").is_file()
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))


def test_fine_tuning_a_checkpoint_without_d_trains_a_fresh_discriminator(tmp_path, caplog):
    t0 = trainer(tmp_path / "a", 4)
    t0.train()
    src = torch.load(tmp_path / "a" / "run" / "checkpoints" / "latest.pt", weights_only=True)
    torch.save({"g_ema": src["g_ema"], "latent_avg": src["latent_avg"]}, tmp_path / "g_only.pt")
    with caplog.at_level("WARNING"):
        t = GeneratorTrainer(GeneratorTrainOptions().parse(
            ["--data", "x", "--exp_dir", str(tmp_path / "ft"), "--ckpt", str(tmp_path / "g_only.pt"), "--batch", "4",
             "--workers", "0", "--kimg", "0.008", "--n_samples", "4"]), dataset=TwoColours())
    assert "no 'd' entry: training a freshly initialized discriminator" in caplog.text
    assert all(torch.equal(t.G.state_dict()[k], v) for k, v in src["g_ema"].items())
    t.train()
    assert (tmp_path / "ft" / "checkpoints" / "latest.pt").is_file()


class StandIn(nn.Module):
    """The Wang et al. interface: pixel L1 between g_real(w) and g_rendering(w) as 'sketch' and 'color'."""

    def __init__(self, g_real, weight):
        super().__init__()
        self.g_real, self.weight, self.calls = g_real, weight, 0

    def forward(self, w_plus, g_rendering):
        self.calls += 1
        with torch.no_grad():
            ref = self.g_real.synthesis(w_plus, noise_mode="const")
        d = (g_rendering.synthesis(w_plus, noise_mode="const") - ref).abs().mean()
        return {"sketch": d, "color": d, "total": self.weight * d}

    def identity_drift(self, w_plus, g_rendering):
        return (g_rendering.synthesis(w_plus) - self.g_real.synthesis(w_plus)).abs().mean()


def test_consistency_terms_join_the_g_loss_and_keep_g_near_the_starting_generator(tmp_path):
    torch.manual_seed(0)
    G = Generator(SIZE, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
    ckpt = tmp_path / "start.pt"
    torch.save({"g_ema": G.state_dict()}, ckpt)
    drift = {}
    for weight in (0.0, 50.0):
        hook = StandIn(copy.deepcopy(G).requires_grad_(False), weight)   # g_real: the starting generator
        opts = options(tmp_path / str(weight), 20, "--ckpt", str(ckpt), "--consistency", "--augment", "none",
                       "--tick_kimg", "0.04")
        t = GeneratorTrainer(opts, dataset=TwoColours(), consistency=hook)
        history = t.train()
        assert hook.calls == 20 and {"consistency_sketch", "consistency_color", "consistency_total"} <= set(history[-1])
        w = t.sample_wplus(t.G, 8).detach()
        drift[weight] = hook.identity_drift(w, t.G).item()
    assert drift[50.0] < 0.5 * drift[0.0], drift


class NaNImages(TwoColours):
    def __getitem__(self, i):
        return torch.full((3, SIZE, SIZE), float("nan"))


def test_a_non_finite_loss_stops_the_run_before_any_checkpoint_is_written(tmp_path):
    from render2style.training import NonFiniteLossError
    t = trainer(tmp_path, 4, "--snapshot_kimg", "0.008", dataset=NaNImages())
    with pytest.raises(NonFiniteLossError, match="non-finite loss at iteration 1"):
        t.train()
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_bf16_autocast_trains_and_keeps_float32_weights(tmp_path):
    t = trainer(tmp_path, 4, "--amp", "bf16", "--augment", "diffaugment")
    history = t.train()
    assert len(history) == 4 and all(math.isfinite(v) for r in history for v in r.values())
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in ckpt["g_ema"].values() if v.is_floating_point())


# --- options ---------------------------------------------------------------------------------------------
def test_presets_fill_what_is_not_given_and_bad_combinations_stop_at_parse_time(tmp_path, capsys):
    base = ["--data", "d", "--exp_dir", str(tmp_path / "e")]
    o = GeneratorTrainOptions().parse(base + ["--size", "256"])
    assert (o.batch, o.lr, o.beta1, o.beta2, o.mixing_prob, o.pl_weight, o.ema_kimg) == (32, 2e-3, 0, 0.99, 0.9, 2,
                                                                                         10)
    assert o.r1_gamma is None and default_r1_gamma(1024) == 10 and default_r1_gamma(256) == pytest.approx(0.625)
    w = GeneratorTrainOptions().parse(base + ["--preset", "wang", "--ckpt", "g.pt", "--batch", "8"])
    assert (w.freeze_mapping, w.freeze_torgb, w.mirror, w.kimg, w.consistency, w.batch) == (True, True, True, 40,
                                                                                          True, 8)
    for argv, message in ((base, "--size is required"), (base + ["--preset", "wang"], "--ckpt"),
                          (base + ["--size", "48"], "power of two"), (base + ["--size", "64", "--batch", "6"],
                                                                      "multiple of --mbstd_group"),
                          (base + ["--size", "64", "--augment", "diffaugment", "--diffaugment_policy", "blur"],
                           "unknown DiffAugment")):
        with pytest.raises(SystemExit):
            GeneratorTrainOptions().parse(argv)
        assert message in capsys.readouterr().err


# --- DDP ---------------------------------------------------------------------------------------------------
def _ddp_worker(rank, world, port, exp_dir, out_dir):
    import os

    from render2style.training.distributed import cleanup_distributed
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        opts = GeneratorTrainOptions().parse(
            ["--data", "x", "--exp_dir", exp_dir, "--batch", "8", "--workers", "0", "--kimg", "0.024",
             "--n_samples", "4", "--pl_every", "2", "--r1_every", "2", "--augment", "ada", "--augment_p", "0.2",
             "--ada_interval", "1", *TINY])
        t = GeneratorTrainer(opts, dataset=TwoColours(16))
        history = t.train()
        torch.save({"g": t.G.state_dict(), "g_ema": t.G_ema.state_dict(), "d": t.D.state_dict(),
                    "history": history, "p": float(t.augment.p), "writer": t.writer is not None},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        t.close()
    finally:
        cleanup_distributed()


def test_two_ranks_average_gradients_draw_their_own_samples_and_rank_0_writes(tmp_path):
    import torch.multiprocessing as mp
    from test_ddp import _free_port
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("g", "g_ema", "d"):
        for name, v in r0[key].items():
            assert torch.equal(v, r1[key][name]), f"ranks disagree on {key}.{name}"
    assert r0["p"] == r1["p"] != 0.2             # p moved, the same on both ranks: r_t is summed over their reals
    assert [h["g_loss"] for h in r0["history"]] != [h["g_loss"] for h in r1["history"]]   # own z per rank
    assert r0["writer"] and not r1["writer"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert len(ckpt[RESUME_KEY]["rng"]) == 2 and ckpt[RESUME_KEY]["world_size"] == 2
