"""Speed of encoding: throughput and batch-1 latency, fp32/bf16, eager/compiled, and the teacher's s/image.

    r2s-benchmark                       # demo config, CPU or GPU
    r2s-benchmark --configs demo,full --iters 3 --markdown docs/BENCHMARKS.md
    r2s-benchmark --configs full --dtypes fp32 --baseline /tmp/old --ab_batches 1,8   # A/B vs /tmp/old/render2style

Configs: ``demo`` = the model ``train_encoder.py --dataset renders`` trains (the demo's encoder options
from ``DEMO_DEFAULTS`` and the 64² demo generator); ``full`` = pSp's encoder (GradualStyleEncoder on
IR-SE50, 256² input) + a 1024² config-f generator (18 styles). Both use RANDOM weights: speed does not
depend on the values. Timings synchronize the GPU; the first calls (warm-up, compilation) are not timed. Each
figure is reported as the minimum (the least disturbed run: the best estimate of the machine's speed
on a shared host) and the median of ``--iters`` timed calls.
Peak memory: CUDA max_memory_allocated on GPUs; the process's peak resident set size on CPUs
(cumulative over the run, so it is an upper bound for later rows).
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from render2style.cli import add_tool_info
from render2style.utils.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:           # torch and the models load after parsing (in the functions), so --help stays fast
    import torch

    from render2style.encoders.psp import pSp

log = logging.getLogger("render2style.benchmark")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_tool_info(p, "r2s-benchmark", "render2style.scripts.benchmark", [
        "r2s-benchmark                                                  # demo config, CPU or GPU",
        "r2s-benchmark --configs demo,full --iters 3 --markdown docs/BENCHMARKS.md",
        "r2s-benchmark --configs full --dtypes bf16 --modes compiled --batch_size 64 --teacher none",
        "r2s-benchmark --configs full --dtypes fp32,bf16 --threads 2 --baseline /tmp/old --ab_batches 1,8"])
    p.add_argument("--configs", default="demo", help="comma-separated: demo, full")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    p.add_argument("--modes", default="eager,compiled",
                   help="comma-separated: eager, compiled, graphed (torch.compile mode reduce-overhead: CUDA graphs)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch_size", type=int, default=None, help="throughput batch (default: 64 GPU, 4 CPU)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per measurement (min and median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first (compilation happens here)")
    p.add_argument("--teacher", choices=["none", "demo"], default="demo",
                   help="time the Garbin teacher with TeacherConfig.demo() on the demo generator")
    p.add_argument("--teacher_images", type=int, default=1, help="renders the teacher is timed on")
    p.add_argument("--lpips_weights", default=None,
                   help="VGG-16 LPIPS backbone for the teacher; absent: the teacher's demo option "
                        "(no perceptual terms)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="also time an older source tree against this one (DIR holds its render2style package, "
                        "e.g. from `git archive`): interleaved A/B calls on the same weights, CPU; outputs compared")
    p.add_argument("--peak_gflops", type=float, default=None,
                   help="the device's peak GFLOP/s at the measured precision (e.g. the build machine's 2 cores: "
                        "416 fp32 and 852 bf16, the rates --roofline measured): rows then report the fraction of "
                        "it that the best throughput reaches; GPUs' peaks are not looked up (that needs a table of "
                        "guesses)")
    p.add_argument("--roofline", action="store_true",
                   help="first measure the device's practical peak per precision (a 3x3 convolution 512 -> 512 "
                        "channels on a 64x64 channels_last map, and a 4096x4096 matrix product) and print it; "
                        "without --peak_gflops, the measured convolution rate becomes each precision's peak")
    p.add_argument("--ab_batches", default="1,8", help="with --baseline: comma-separated batch sizes")
    p.add_argument("--ab_rounds", type=int, default=5, help="with --baseline: A/B pairs per batch size")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="append a results section to this Markdown file")
    args = p.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.ab_rounds < 1:
        p.error("--iters and --ab_rounds must be >= 1 and --warmup >= 0")
    if args.peak_gflops is not None and args.peak_gflops <= 0:
        p.error(f"--peak_gflops must be > 0, got {args.peak_gflops}")
    if args.baseline and not (Path(args.baseline) / "render2style" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: expected a folder holding a render2style package "
                f"({Path(args.baseline) / 'render2style' / '__init__.py'} not found)")
    return args


def random_psp(config: str, device: torch.device) -> pSp:
    """pSp with random weights: ``demo`` (the demo's encoder options, 64² demo generator) or ``full``
    (pSp's encoder, 1024² config-f generator)."""
    import torch

    from render2style.encoders.psp import DEFAULT_OPTS, pSp
    from render2style.encoders.psp_encoders import build_encoder
    from render2style.options.train_options import DEMO_DEFAULTS
    from render2style.stylegan2 import Generator
    if config == "demo":
        demo = {k: v for k, v in DEMO_DEFAULTS.items() if k in DEFAULT_OPTS}   # encoder size, resolutions
        return pSp({**demo, "stylegan_weights": "demo-random", "ir_se50_weights": "none"}).to(device).eval()
    if config != "full":
        raise ValueError(f"unknown config {config!r}; expected demo or full")
    G = Generator(1024)
    enc = build_encoder("GradualStyleEncoder", 50, "ir_se", G.n_latent, 3)
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in G.state_dict().items()}}
    return pSp({"output_size": 1024}, checkpoint={"state_dict": state, "latent_avg": torch.zeros(1, 512)}).to(
        device).eval()


def peak_memory_mb(device: torch.device) -> float:
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux


def time_calls(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> list[float]:
    """Seconds of each of ``iters`` calls after ``warmup`` untimed ones (device synchronized)."""
    from render2style.inference.engine import synchronize
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def measure_roofline(device: torch.device, dtype: str, iters: int = 5, channels: int = 512, side: int = 64,
                     n: int = 4096) -> dict[str, float]:
    """GFLOP/s of the fastest of ``iters`` calls (after 2 warm-up calls) of a 3x3 convolution ``channels`` ->
    ``channels`` on a ``side``² channels_last map (padding 1, batch 1: the generator's and encoder's bulk) and of
    an ``n`` x ``n`` matrix product, in ``dtype`` ("fp32" | "bf16" | "fp16"): the practical peak of the device
    for these models (2 FLOPs per multiply-add)."""
    import torch
    import torch.nn.functional as F

    from render2style.inference.engine import DTYPES
    dt = DTYPES[dtype] or torch.float32
    x = torch.randn(1, channels, side, side, device=device, dtype=dt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device, dtype=dt).contiguous(memory_format=torch.channels_last)
    a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
    conv = min(time_calls(lambda: F.conv2d(x, w, padding=1), device, iters, 2))
    matmul = min(time_calls(lambda: a @ b, device, iters, 2))
    return {"dtype": dtype, "conv3x3_gflops": 2 * channels * channels * 9 * side * side / conv / 1e9,
            "matmul_gflops": 2 * n ** 3 / matmul / 1e9}


def multiply_adds(fn: Callable, *args) -> int:
    """Multiply-adds of one call ``fn(*args)``: half of what ``torch.utils.flop_counter.FlopCounterMode``
    counts (2 FLOPs per multiply-add of every convolution, transposed and functional ones included, and matrix
    product; element-wise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def model_multiply_adds(model, size: int) -> dict[str, int]:
    """Multiply-adds per image of ``model``'s (an ``InferenceModel``) encoder (``size``² input) and of its
    generator (the synthesis from the W+ codes), counted on one image."""
    import torch
    x = torch.zeros(1, 3, size, size, device=model.device)
    codes = model.encode(x)
    grads = [(p, p.requires_grad) for p in model.net.parameters()]
    try:       # no_grad, not inference mode, on frozen parameters: what the counter's module tracker accepts
        for p, _ in grads:
            p.requires_grad_(False)
        with torch.no_grad(), model._autocast():          # its precision: a bf16 model's weights need autocast
            return {"encoder": multiply_adds(model._encode, x), "generator": multiply_adds(model._decode, codes)}
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


def add_flop_rates(row: dict, macs_per_image: int, peak_gflops: float | None) -> dict:
    """``row`` with the multiply-adds per image of its stage, the FLOP rate its best throughput reaches
    (2 FLOPs per multiply-add) and, given the device's peak (GFLOP/s), the fraction of it."""
    row["gmacs_per_img"] = macs_per_image / 1e9
    row["achieved_gflops"] = 2 * row["gmacs_per_img"] * row["throughput_img_s_best"]
    row["peak_fraction"] = row["achieved_gflops"] / peak_gflops if peak_gflops else None
    return row


def bench_model(net: pSp, config: str, dtype: str, mode: str, device: torch.device, batch: int,
                iters: int, warmup: int, size: int = 256, macs: dict[str, int] | None = None,
                peak_gflops: float | None = None) -> list[dict]:
    """Batch-1 latency and batch throughput of the encoder and of encoder+generator on ``size``² inputs; with
    ``macs`` (:func:`model_multiply_adds`) also the FLOP rate reached (:func:`add_flop_rates`)."""
    import torch

    from render2style.inference.engine import InferenceModel
    model = InferenceModel(net, device, dtype, compile=mode != "eager",
                           compile_mode="reduce-overhead" if mode == "graphed" else None)
    macs = macs or model_multiply_adds(model, size)
    stage_macs = {"encoder": macs["encoder"], "encoder+generator": macs["encoder"] + macs["generator"]}
    rows = []
    for stage, fn in (("encoder", model.encode), ("encoder+generator", model)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        x1 = torch.randn(1, 3, size, size, device=device)
        xb = torch.randn(batch, 3, size, size, device=device)
        t0 = time.perf_counter()
        lat = time_calls(partial(fn, x1), device, iters, warmup)
        thr = time_calls(partial(fn, xb), device, iters, warmup)
        rows.append({
            "config": config, "stage": stage, "dtype": dtype, "mode": mode, "batch": batch,
            "latency_ms_min": 1e3 * min(lat), "latency_ms_median": 1e3 * statistics.median(lat),
            "throughput_img_s_best": batch / min(thr), "throughput_img_s_median": batch / statistics.median(thr),
            "peak_mem_mb": peak_memory_mb(device), "bench_s": time.perf_counter() - t0,
            "input": f"{size}²", "output": f"{net.decoder.size}²",
        })
        r = add_flop_rates(rows[-1], stage_macs[stage], peak_gflops)
        log.info("%-5s %-18s %-4s %-8s batch-1 %.1f ms (median %.1f), batch %d: %.2f img/s (median %.2f), "
                 "peak %.0f MiB; %.2f GMAC/img, %.1f GFLOP/s%s", config, stage, dtype, mode, r["latency_ms_min"],
                 r["latency_ms_median"], batch, r["throughput_img_s_best"], r["throughput_img_s_median"],
                 r["peak_mem_mb"], r["gmacs_per_img"], r["achieved_gflops"],
                 "" if r["peak_fraction"] is None else f" ({100 * r['peak_fraction']:.0f} % of peak)")
    check = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    images, _ = model(check)
    rows[-1]["check_images"] = images.cpu()      # compared with fp32 eager in main (then dropped)
    return rows


def bench_teacher(device: torch.device, n: int, lpips_weights: str | None) -> dict:
    """Seconds per image of the Garbin teacher (TeacherConfig.demo(), demo generator, demo renders)."""
    import tempfile

    import numpy as np
    import torch

    from render2style.datasets.demo_renders import make_demo_renders
    from render2style.inference.engine import synchronize
    from render2style.inference.inputs import read_image
    from render2style.stylegan2 import demo_generator
    from render2style.teacher import PerceptualNets, TeacherConfig, TeacherInput, resolve_priors, run_teacher

    G = demo_generator(0, device)
    t0 = time.perf_counter()
    cfg = resolve_priors(G, TeacherConfig.demo(), device)      # once per generator: not counted per image
    priors_s = time.perf_counter() - t0
    perceptual = PerceptualNets.load(lpips_weights, device=device) if lpips_weights else False
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(make_demo_renders(tmp, n, seed=0, size=64)):
            rgb, face = read_image(Path(path))
            image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)
            mask = torch.from_numpy(face)[None, None].to(device)
            t0 = time.perf_counter()
            run_teacher("garbin", G, TeacherInput(image, mask), cfg, perceptual, seed=i)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    out = {"method": "garbin", "config": "TeacherConfig.demo() on the 64² demo generator",
           "perceptual": bool(lpips_weights), "images": n, "s_per_image": float(np.mean(times)),
           "priors_s_once": priors_s}
    log.info("teacher (garbin, demo preset): %.1f s/image", out["s_per_image"])
    return out


class TreeWorker:
    """``scripts/benchmark_worker.py`` in a child process, measuring the pSp model of one source tree."""

    def __init__(self, tree: str | os.PathLike | None, config: str, dtype: str, threads: int | None, state: Path):
        """``tree`` None: the render2style this process imports."""
        cmd = [sys.executable, str(Path(__file__).with_name("benchmark_worker.py")), "--config", config,
               "--dtype", dtype, "--state", str(state)] + (["--threads", str(threads)] if threads else []) + (
            ["--tree", str(tree)] if tree else [])
        self.tree = tree or "this tree"
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._reply("ready")

    def _reply(self, expect: str | None = None) -> str:
        for line in self.proc.stdout:
            if expect is None or line.strip() == expect:
                return line.strip()
        raise RuntimeError(f"benchmark worker for {self.tree} ended (exit status {self.proc.wait()}); see its "
                           "messages above")

    def run(self, batch: int, save: Path | None = None) -> tuple[float, float]:
        """(wall-clock, process CPU) seconds of one timed call on ``batch`` images (images saved to ``save``)."""
        self.proc.stdin.write(f"save {batch} {save}\n" if save else f"run {batch}\n")
        self.proc.stdin.flush()
        wall, cpu = self._reply().split()
        return float(wall), float(cpu)

    def multiply_adds(self) -> int:
        """Multiply-adds per image of encoder + generator (the tree needs ``model_multiply_adds``)."""
        self.proc.stdin.write("macs\n")
        self.proc.stdin.flush()
        return sum(int(v) for v in self._reply().split())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait()


def compare_trees(baseline: str, config: str, dtype: str, batches: Sequence[int], rounds: int,
                  threads: int | None, peak_gflops: float | None = None) -> list[dict]:
    """This tree (A) against ``baseline`` (B) on the same random weights: per batch size, ``rounds`` pairs of
    calls in alternating order (A B, B A, ...) after one untimed call each; speedup = median of the per-pair
    ratios B / A, of wall-clock and of process CPU time (the steadier one on a shared machine: it leaves out the
    time the process waited for a core); the two trees' images of the first call compared (relative L2, max |Δ|);
    the FLOP rate of each tree's median from this tree's multiply-adds per image (and the fraction of
    ``peak_gflops``)."""
    import tempfile

    import torch
    with tempfile.TemporaryDirectory(prefix="r2s-ab-") as tmp:
        state = Path(tmp) / "state.pt"
        workers = {"this": TreeWorker(None, config, dtype, threads, state)}   # writes the weights
        workers["baseline"] = TreeWorker(baseline, config, dtype, threads, state)  # loads them
        rows = []
        try:
            gmacs = workers["this"].multiply_adds() / 1e9
            for batch in batches:
                for name, w in workers.items():
                    w.run(batch, save=Path(tmp) / f"{name}.pt")
                a, b = (torch.load(Path(tmp) / f"{n}.pt", weights_only=True) for n in ("this", "baseline"))
                times = {"this": [], "baseline": []}
                for r in range(rounds):
                    for name in (("this", "baseline") if r % 2 == 0 else ("baseline", "this")):
                        times[name].append(workers[name].run(batch))
                ratios = [tb[0] / ta[0] for ta, tb in zip(times["this"], times["baseline"])]
                cpu_ratios = [tb[1] / ta[1] for ta, tb in zip(times["this"], times["baseline"])]
                rows.append({"config": config, "dtype": dtype, "batch": batch, "baseline": str(baseline),
                             "this_s_img_median": statistics.median(t[0] for t in times["this"]) / batch,
                             "baseline_s_img_median": statistics.median(t[0] for t in times["baseline"]) / batch,
                             "this_cpu_s_img_median": statistics.median(t[1] for t in times["this"]) / batch,
                             "baseline_cpu_s_img_median": statistics.median(t[1] for t in times["baseline"]) / batch,
                             "cpu_speedup_median": statistics.median(cpu_ratios),
                             "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
                             "speedup_max": max(ratios), "pairs": rounds,
                             "rel_l2": float((a - b).norm() / b.norm()), "max_abs_diff": float((a - b).abs().max())})
                r = rows[-1]
                r["gmacs_per_img"] = gmacs
                for name in ("this", "baseline"):
                    r[f"{name}_gflops"] = 2 * gmacs / r[f"{name}_s_img_median"]
                    r[f"{name}_peak_fraction"] = r[f"{name}_gflops"] / peak_gflops if peak_gflops else None
                log.info("A/B %s %s batch %d: %.3f s/img vs baseline %.3f s/img: %.2fx (pairs %.2f-%.2f), "
                         "outputs rel. L2 %.1e", config, dtype, batch, r["this_s_img_median"],
                         r["baseline_s_img_median"], r["speedup_median"], r["speedup_min"], r["speedup_max"],
                         r["rel_l2"])
        finally:
            for w in workers.values():
                w.close()
    return rows


def ab_markdown(rows: Sequence[dict]) -> str:
    peak = "; % of the given peak" if rows[0]["this_peak_fraction"] is not None else ""
    lines = [f"A/B against the tree in `{rows[0]['baseline']}` (same random weights; {rows[0]['pairs']} interleaved "
             "pairs per row; medians; speedup = median of the per-pair ratios baseline / this, with its range):", "",
             "| config | precision | batch | this tree (s/img) | baseline (s/img) | speedup [range] | "
             "CPU s/img this / baseline | CPU-time speedup | outputs rel. L2 / max abs. diff | "
             f"GFLOP/s this / baseline ({rows[0]['gmacs_per_img']:.1f} GMAC/img{peak}) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rates = " / ".join(f"{r[f'{n}_gflops']:.1f}" + ("" if r[f"{n}_peak_fraction"] is None else
                                                         f" ({100 * r[f'{n}_peak_fraction']:.0f} %)")
                           for n in ("this", "baseline"))
        lines.append(f"| {r['config']} | {r['dtype']} | {r['batch']} | {r['this_s_img_median']:.3f} | "
                     f"{r['baseline_s_img_median']:.3f} | **{r['speedup_median']:.2f}×** "
                     f"[{r['speedup_min']:.2f}–{r['speedup_max']:.2f}] | {r['this_cpu_s_img_median']:.3f} / "
                     f"{r['baseline_cpu_s_img_median']:.3f} | {r['cpu_speedup_median']:.2f}× | "
                     f"{r['rel_l2']:.1e} / {r['max_abs_diff']:.1e} | {rates} |")
    return "\n".join(lines) + "\n"


def device_description(device: torch.device) -> str:
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("n/a" where the OS has none)."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def warn_if_busy(device: torch.device) -> None:
    """Warn when other processes keep the CPU busy: shared cores inflate CPU timings several-fold."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    if device.type == "cpu" and load > 0.5 * (os.cpu_count() or 1):
        log.warning("load average %.2f on %d CPU cores before the run: CPU timings will be inflated by other "
                    "processes (the minimum over iterations is the least affected figure)", load, os.cpu_count())


def append_markdown(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to the Markdown file ``path`` (created when absent), atomically."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    atomic_write_text(old + ("\n" if old else "") + text, path)


def roofline_markdown(roofline: Sequence[dict]) -> str:
    """One sentence per precision ``measure_roofline`` measured (empty when none)."""
    return "".join(f"Roofline {r['dtype']} (measured): 3×3 conv {r['conv3x3_gflops']:.0f} GFLOP/s, "
                   f"matrix product {r['matmul_gflops']:.0f} GFLOP/s. " for r in roofline)


def to_markdown(result: dict) -> str:
    lines = [f"### {result['date']} — {result['device']}", "",
             f"torch {result['torch']}; load average at start {result['load_start']}, at end {result['load_end']}; "
             f"random weights (timing only); {result['iters']} timed iterations after "
             f"{result['warmup']} warm-up; throughput batch {result['batch_size']}. "
             + roofline_markdown(result.get("roofline", [])), "",
             "| config | stage | dtype | mode | batch-1 latency (ms) min / median | throughput (img/s) best / median "
             "| GMAC/img | GFLOP/s (of peak) | peak memory (MiB) | images vs fp32 eager (rel. L2) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        diff = r.get("rel_l2_vs_fp32_eager")
        agreement = "n/a" if diff is None else f"{diff:.1e}"
        fraction = "" if r.get("peak_fraction") is None else f" ({100 * r['peak_fraction']:.0f} %)"
        lines.append(f"| {r['config']} ({r['input']} → {r['output']}) | {r['stage']} | {r['dtype']} | {r['mode']} | "
                     f"{r['latency_ms_min']:.1f} / {r['latency_ms_median']:.1f} | "
                     f"{r['throughput_img_s_best']:.3g} / {r['throughput_img_s_median']:.3g} | "
                     f"{r['gmacs_per_img']:.2f} | {r['achieved_gflops']:.1f}{fraction} | "
                     f"{r['peak_mem_mb']:.0f} | {agreement} |")
    t = result.get("teacher")
    if t:
        perceptual = "on" if t["perceptual"] else "off"
        lines += ["", f"Teacher ({t['method']}, {t['config']}, perceptual terms {perceptual}): "
                      f"**{t['s_per_image']:.1f} s/image** over {t['images']} image(s) "
                      f"(plus {t['priors_s_once']:.1f} s once for the generator's latent priors)."]
        for cfg, s in result.get("speedup", {}).items():
            lines.append(f"Speedup teacher / encoder+generator ({cfg}, minimum batch-1 latency): **{s:.0f}×**.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    import torch

    from render2style.inference.engine import InferenceModel, pick_device
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    load_start = load_average()
    warn_if_busy(device)
    batch = args.batch_size or (64 if device.type == "cuda" else 4)
    dtypes = args.dtypes.split(",")
    roofline = [measure_roofline(torch.device("cpu") if args.baseline else device, d) for d in dtypes] \
        if args.roofline else []
    for r in roofline:
        log.info("roofline %s: 3x3 conv %.0f GFLOP/s, matrix product %.0f GFLOP/s", r["dtype"], r["conv3x3_gflops"],
                 r["matmul_gflops"])
    peaks = {d: args.peak_gflops or next((r["conv3x3_gflops"] for r in roofline if r["dtype"] == d), None)
             for d in dtypes}
    if args.baseline:
        ab_rows = [row for config in args.configs.split(",") for dtype in dtypes
                   for row in compare_trees(args.baseline, config, dtype, [int(b) for b in args.ab_batches.split(",")],
                                            args.ab_rounds, args.threads, peaks[dtype])]
        text = f"### {datetime.datetime.now():%Y-%m-%d %H:%M} — {device_description(torch.device('cpu'))}\n\n" + \
            f"load average at start {load_start}, at end {load_average()}. " + roofline_markdown(roofline) + \
            ab_markdown(ab_rows)
        if args.json:
            atomic_write_json({"ab": ab_rows, "roofline": roofline}, args.json)
        print(text)
        if args.markdown:
            append_markdown(args.markdown, text)
        return 0
    rows = []
    for config in args.configs.split(","):
        net = random_psp(config, device)
        size = getattr(net.opts, "resolution", 256)
        macs = model_multiply_adds(InferenceModel(net, device, "fp32"), size)    # eager: the counter sees each op
        log.info("%s: %.2f GMAC per image in the encoder, %.2f in the generator", config, macs["encoder"] / 1e9,
                 macs["generator"] / 1e9)
        reference = None
        for dtype in dtypes:
            for mode in args.modes.split(","):
                rows += bench_model(net, config, dtype, mode, device, batch, args.iters, args.warmup, size, macs,
                                    peaks[dtype])
                images = rows[-1].pop("check_images")
                if (dtype, mode) == ("fp32", "eager"):
                    reference = images
                rows[-1]["rel_l2_vs_fp32_eager"] = (float((images - reference).norm() / reference.norm())
                                                    if reference is not None else None)
        del net
    result = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "device": device_description(device),
              "torch": torch.__version__ + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""),
              "iters": args.iters, "warmup": args.warmup, "batch_size": batch,
              "rows": rows, "load_start": load_start, "roofline": roofline}
    if args.teacher == "demo":
        result["teacher"] = bench_teacher(device, args.teacher_images, args.lpips_weights)
        demo_rows = [r for r in rows if r["stage"] == "encoder+generator" and r["config"] == "demo"]
        if demo_rows:
            best = min(r["latency_ms_min"] for r in demo_rows) / 1e3
            result["speedup"] = {"demo": result["teacher"]["s_per_image"] / best}
    result["load_end"] = load_average()
    if args.json:
        atomic_write_json(result, args.json)
    print(to_markdown(result))
    if args.markdown:
        append_markdown(args.markdown, to_markdown(result))
        log.info("appended results to %s", args.markdown)
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
