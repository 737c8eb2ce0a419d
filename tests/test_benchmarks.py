"""The benchmark scripts run their real code paths on tiny inputs and return well-formed rows (no timings asserted).

``measure`` builds the real ``Trainer`` and ``EncoderObjective``; the pSp model is replaced by a small
one with pSp's interface (a linear encoder on the 64² demo generator), so one step takes well under a second.
"""
import math

import pytest
import torch
from torch import nn

from render2style.options.train_options import TrainOptions
from render2style.scripts import benchmark, benchmark_training
from render2style.stylegan2 import demo_generator
from render2style.training.objective import EncoderObjective


class SmallPSp(nn.Module):
    """pSp's training interface: codes = encoder(x) + latent_avg -> the demo generator."""

    def __init__(self):
        super().__init__()
        self.decoder = demo_generator(0)
        n = self.decoder.n_latent
        self.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, n * 512))
        self.register_buffer("latent_avg", torch.zeros(n, 512))

    def forward(self, x, resize=True, return_latents=False):
        codes = self.encoder(x).view(x.shape[0], -1, 512) + self.latent_avg
        images = self.decoder.synthesis(codes)
        return (images, codes) if return_latents else images


@pytest.fixture
def small_model(monkeypatch):
    monkeypatch.setattr("render2style.training.trainer.build_model", lambda opts: SmallPSp())


def test_training_benchmark_times_real_trainer_steps(small_model, tmp_path):
    spec = {"config": "demo", "dtype": "fp32", "device": "cpu", "threads": 1, "batch_size": 2, "steps": 2,
            "warmup": 1, "exp_dir": str(tmp_path / "exp"), "lpips_type": "alex"}
    row = benchmark_training.measure(spec)
    assert row["config"] == "demo" and row["batch"] == 2 and row["steps"] == 2
    assert row["losses"] == "l2+latent"                       # the demo without weight files
    assert row["input"] == "64²" and row["output"] == "64²"
    assert 0 < row["step_s_min"] <= row["step_s_median"]
    assert math.isclose(row["img_s"], 2 / row["step_s_median"])
    assert row["peak_mem_mb"] > 0 and row["peak_kind"] == "RSS"
    text = benchmark_training.to_markdown({"date": "d", "device": "cpu", "torch": "t", "load_start": "1",
                                           "load_end": "2", "steps": 2, "warmup": 1, "rows": [row]})
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 3 and len({line.count("|") for line in table}) == 1


def test_training_benchmark_main_writes_json_and_markdown(small_model, tmp_path):
    md = tmp_path / "bench.md"
    md.write_text("# Benchmarks\n")
    benchmark_training.main(["--configs", "demo", "--dtypes", "fp32,bf16", "--steps", "1", "--warmup", "0",
                             "--batch_size", "1", "--threads", "1", "--in_process",
                             "--json", str(tmp_path / "r.json"), "--markdown", str(md)])
    text = md.read_text()
    assert text.startswith("# Benchmarks\n") and "| 64² → 64² | bf16 | 1 |" in text
    assert (tmp_path / "r.json").is_file()


def test_full_config_uses_the_full_size_job_options(tmp_path):
    spec = {"config": "full", "dtype": "bf16", "device": "cpu", "exp_dir": str(tmp_path),
            "stylegan_weights": "g.pt", "batch_size": None}
    opts = TrainOptions().parse(benchmark_training.train_argv(spec))
    assert not opts.demo and (opts.output_size, opts.resolution, opts.amp) == (1024, 256, "bf16")
    assert opts.encoder_type == "GradualStyleEncoder" and opts.encoder_num_layers == 50
    assert opts.no_perceptual and opts.w_norm_lambda > 0 and opts.latent_lambda > 0 and opts.l2_lambda > 0


def test_random_stand_in_weights_load_as_the_real_loss_networks(tmp_path):
    paths = benchmark_training.write_stand_in_weights(tmp_path, need_generator=False, lpips_type="alex",
                                                      need_id=True)
    spec = {"config": "full", "dtype": "fp32", "device": "cpu", "exp_dir": str(tmp_path), "batch_size": None,
            "stylegan_weights": "g.pt", **paths}
    objective = EncoderObjective(TrainOptions().parse(benchmark_training.train_argv(spec)))
    assert objective.names == ["loss", "loss_l2", "loss_lpips", "loss_id", "loss_latent", "loss_w_norm",
                               "id_improve"]


def test_encode_benchmark_rows_are_well_formed(monkeypatch):
    class Net(nn.Module):  # InferenceModel's interface on a tiny model
        def __init__(self):
            super().__init__()
            self.decoder = demo_generator(0)
            self.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                         nn.Linear(3, self.decoder.n_latent * 512))

        def encode(self, x, encoder=None):
            return (encoder or self.encoder)(x).view(x.shape[0], -1, 512)

    rows = benchmark.bench_model(Net(), "demo", "fp32", "eager", torch.device("cpu"), batch=2, iters=2, warmup=0)
    assert [r["stage"] for r in rows] == ["encoder", "encoder+generator"]
    for r in rows:
        assert 0 < r["latency_ms_min"] <= r["latency_ms_median"]
        assert r["throughput_img_s_best"] >= r["throughput_img_s_median"] > 0
    text = benchmark.to_markdown({"date": "d", "device": "cpu", "torch": "t", "iters": 2, "warmup": 0,
                                  "batch_size": 2, "rows": rows, "load_start": "1", "load_end": "1"})
    assert len([line for line in text.splitlines() if line.startswith("| demo")]) == 2


def test_teacher_quality_benchmark_reports_every_step_and_its_gain(tmp_path):
    """Closed loop on the demo generator with tiny counts: a row per step and baseline, the gains computed
    from those rows (CS-ANNS and the projector lower eq. 1 here), and the CSV holding the same rows."""
    from render2style.scripts import benchmark_teacher_quality as bq
    tiny = ["n_samples=16", "csanns_outer=2", "csanns_proposals=16", "proj_steps=10", "n_seeds=1", "seed_batch=1",
            "prior_samples=300", "interp_layers=1", "interp_alphas=0.9"]
    rows = bq.main(["--n", "2", "--methods", "garbin,projector", "--no_landmarks", "--threads", "1",
                    "--out_csv", str(tmp_path / "q.csv"), "--out_md", str(tmp_path / "q.md"),
                    *[a for t in tiny for a in ("--set", t)]])
    steps = [(r["target"], r["method"], r["step"]) for r in rows]
    assert len(steps) == 2 * 7 and len(set(steps)) == len(steps)
    by = {(r["target"], r["step"]): r for r in rows if r["method"] in ("garbin", "start")}
    for target in {r["target"] for r in rows}:
        assert by[(target, "csanns")]["loss"] < by[(target, "sampling")]["loss"] < by[(target, "start")]["loss"]
        assert by[(target, "selection")]["ssim"] == max(r["ssim"] for r in rows
                                                         if r["target"] == target and r["method"] == "garbin")
        assert by[(target, "start")]["w_err"] > 0
    table = (tmp_path / "q.md").read_text()
    for label in ("start (w̄)", "| sampling |", "| csanns |", "| projector |", "| interpolation |", "| selection |",
                  "baseline projector"):
        assert label in table
    assert "yes (2/2)" in table and "by construction" in table
    assert len((tmp_path / "q.csv").read_text().strip().splitlines()) == len(rows) + 1


def test_ab_comparison_shares_the_weights_between_trees(tmp_path):
    """``--baseline`` against this very tree: both workers run the same weights (written by one, loaded by the
    other), so the images agree exactly; rows carry wall-clock and CPU-time speedups."""
    from pathlib import Path
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "render2style").symlink_to(Path(benchmark.__file__).resolve().parents[1])
    rows = benchmark.compare_trees(str(tree), "demo", "fp32", [1], rounds=1, threads=1)
    assert [(r["batch"], r["pairs"]) for r in rows] == [(1, 1)]
    assert rows[0]["rel_l2"] == 0 and rows[0]["max_abs_diff"] == 0
    assert rows[0]["speedup_median"] > 0 and rows[0]["cpu_speedup_median"] > 0
    r = rows[0]
    net = benchmark.random_psp("demo", torch.device("cpu"))
    from render2style.inference.engine import InferenceModel
    macs = benchmark.model_multiply_adds(InferenceModel(net, torch.device("cpu")), net.opts.resolution)
    assert r["gmacs_per_img"] == sum(macs.values()) / 1e9
    assert r["this_gflops"] == 2 * r["gmacs_per_img"] / r["this_s_img_median"]
    table = benchmark.ab_markdown(rows)
    assert table.count("\n|") == 3 and "| demo | fp32 | 1 |" in table


def test_generator_multiply_adds_match_a_count_from_the_layer_shapes():
    """FlopCounterMode's count of one synthesis equals the multiply-adds written out from the layer shapes."""
    from render2style.stylegan2 import Generator
    G = Generator(16, style_dim=8, n_mlp=2, channel_multiplier=1, channel_max=8).eval().requires_grad_(False)
    c, d = 8, 8                                             # channels at every resolution, style_dim
    expected = c * c * 9 * 4 ** 2 + c * 3 * 4 ** 2 + 2 * d * c    # conv1, to_rgb1 (1x1) and their modulations
    for r in (8, 16):
        expected += c * c * 9 * (r // 2) ** 2               # transposed 3x3 conv, stride 2: every input pixel
        expected += c * 16 * r ** 2                         # 4x4 depthwise blur to r x r
        expected += c * c * 9 * r ** 2                      # 3x3 conv
        expected += c * 3 * r ** 2                          # ToRGB 1x1
        expected += 3 * 4 * 2 * 2 * (r // 2 + 1) ** 2       # skip: 4 polyphase 2x2 filters on a shifted grid
        expected += 3 * d * c                               # the three modulations
    with torch.no_grad():
        counted = benchmark.multiply_adds(G.synthesis, torch.randn(1, G.n_latent, d))
    assert counted == expected


def test_encoder_multiply_adds_match_module_hooks():
    """On the demo encoder, the dispatch-level count equals one from forward hooks on every convolution and
    linear layer (output elements x inputs per output)."""
    from render2style.inference.engine import InferenceModel
    from render2style.stylegan2 import EqualLinear
    net = benchmark.random_psp("demo", torch.device("cpu"))
    model = InferenceModel(net, torch.device("cpu"))
    hooked = []

    def count(module, inputs, out):
        if isinstance(module, nn.Conv2d):
            hooked.append(out.numel() * module.in_channels // module.groups * module.kernel_size[0]
                          * module.kernel_size[1])
        else:
            hooked.append(out.numel() * inputs[0].shape[-1])
    encoder = model._encode.keywords["encoder"]
    handles = [m.register_forward_hook(count) for m in encoder.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, EqualLinear))]
    x = torch.zeros(1, 3, net.opts.resolution, net.opts.resolution)
    model.encode(x)
    for h in handles:
        h.remove()
    macs = benchmark.model_multiply_adds(model, net.opts.resolution)
    assert macs["encoder"] == sum(hooked) > 0
    assert benchmark.model_multiply_adds(InferenceModel(net, torch.device("cpu"), "bf16"), net.opts.resolution) == macs
    with torch.no_grad():
        net.requires_grad_(False)
        assert macs["generator"] == benchmark.multiply_adds(net.decoder.synthesis, model.encode(x))


def test_flop_rates_from_throughput_and_peak():
    row = benchmark.add_flop_rates({"throughput_img_s_best": 4.0}, 3 * 10 ** 9, peak_gflops=48.0)
    assert row["gmacs_per_img"] == 3.0 and row["achieved_gflops"] == 24.0 and row["peak_fraction"] == 0.5
    assert benchmark.add_flop_rates({"throughput_img_s_best": 1.0}, 10 ** 9, None)["peak_fraction"] is None


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_roofline_counts_the_flops_of_the_ops_it_times(monkeypatch, dtype):
    """GFLOP/s = 2 · multiply-adds / fastest time, from a count made here; each op runs in the precision asked
    (the conv on a channels_last map)."""
    outputs = []

    def fake_time_calls(fn, device, iters, warmup):
        outputs.append(fn())
        return [0.5, 0.25, 1.0][:iters]

    monkeypatch.setattr(benchmark, "time_calls", fake_time_calls)
    r = benchmark.measure_roofline(torch.device("cpu"), dtype, iters=3, channels=8, side=6, n=10)
    assert r["conv3x3_gflops"] == pytest.approx(2 * (8 * 8 * 9) * 36 / 0.25 / 1e9)
    assert r["matmul_gflops"] == pytest.approx(2 * 10 ** 3 / 0.25 / 1e9)
    conv, product = outputs
    expected = torch.bfloat16 if dtype == "bf16" else torch.float32
    assert conv.shape == (1, 8, 6, 6) and conv.dtype == product.dtype == expected and product.shape == (10, 10)
    assert conv.is_contiguous(memory_format=torch.channels_last)
