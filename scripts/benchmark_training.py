"""Training speed and memory of the encoder: seconds per step, images per second, peak memory.

    r2s-benchmark-training                      # demo config (CPU or GPU)
    r2s-benchmark-training --configs demo,full --steps 5 --markdown docs/BENCHMARKS.md

A step is what the trainer does per batch: ``Trainer.train_step`` (forward under the ``--amp`` autocast,
the ``EncoderObjective`` losses, backward, the Ranger update), timed after warm-up steps, the device
synchronized; data loading is not included (the batch is synthetic and already on the device). The
model, losses and optimizer are the trainer's own, built from ``TrainOptions`` by the trainer.

Configs:
  demo  what ``train_encoder.py --dataset renders`` trains: ``DEMO_DEFAULTS`` (64² input, batch 4) and the
        demo generator; LPIPS/ID only when weight files are given (the demo policy).
  full  GradualStyleEncoder on IR-SE50 (256² input) + a 1024² StyleGAN2 config-f decoder (frozen), with
        RANDOM weights unless ``--stylegan_weights`` is given (speed does not depend on the values);
        L2 + latent + w-norm losses, plus LPIPS / ID with ``--lpips_weights`` / ``--id_weights``. Without
        weight files those two terms are off, or with ``--timing_only`` replaced by the same networks
        with random weights (same cost, meaningless values; labelled in every row).

Each measurement runs in a fresh process (``--in_process`` disables this), so that the CPU's peak
memory (the process's peak resident set size, ``getrusage``) belongs to that row alone. On CUDA the
peak is ``torch.cuda.max_memory_allocated`` over the timed steps.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from render2style.cli import add_tool_info
from render2style.scripts.benchmark import (
    append_markdown,
    device_description,
    load_average,
    peak_memory_mb,
    warn_if_busy,
)
from render2style.utils.io import atomic_write_json

if TYPE_CHECKING:           # torch and the trainer load after parsing (in the functions), so --help stays fast
    import torch

log = logging.getLogger("render2style.benchmark_training")

CONFIGS = ("demo", "full")
AMP = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_tool_info(p, "r2s-benchmark-training", "render2style.scripts.benchmark_training", [
        "r2s-benchmark-training                                         # demo config (CPU or GPU)",
        "r2s-benchmark-training --configs demo,full --steps 5 --markdown docs/BENCHMARKS.md",
        "r2s-benchmark-training --configs full --dtypes bf16 --timing_only"])
    p.add_argument("--configs", default="demo", help="comma-separated: demo, full")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast), fp16 (autocast)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch_size", type=int, default=None,
                   help="batch per step (default: the config's own: demo 4, full 4 on GPU and 1 on CPU)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocation, kernel selection)")
    p.add_argument("--stylegan_weights", default=None, help="full config: a 1024² generator (default: random)")
    p.add_argument("--lpips_weights", default=None, help="LPIPS backbone weights (enables the LPIPS term)")
    p.add_argument("--lpips_type", default="alex", choices=["alex", "vgg"], help="backbone of --lpips_weights")
    p.add_argument("--id_weights", default=None, help="ArcFace IR-SE50 model_ir_se50.pth (enables the ID term)")
    p.add_argument("--timing_only", action="store_true",
                   help="full config: LPIPS / ID with RANDOM weights when their files are not given (timings only)")
    p.add_argument("--in_process", action="store_true",
                   help="measure in this process (CPU peak memory then accumulates over the rows)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="append a results section to this Markdown file")
    args = p.parse_args(argv)
    for c in args.configs.split(","):
        if c not in CONFIGS:
            p.error(f"--configs: unknown config {c!r}; expected {', '.join(CONFIGS)}")
    for d in args.dtypes.split(","):
        if d not in AMP:
            p.error(f"--dtypes: unknown dtype {d!r}; expected {', '.join(AMP)}")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


class SyntheticItems:
    """Random items in the training dataset's format (``datasets.training_dataset``), with teacher targets."""

    def __init__(self, n: int, resolution: int, input_nc: int, n_latent: int):
        import torch
        g = torch.Generator().manual_seed(0)
        self.items = [{
            "input": torch.rand(input_nc, resolution, resolution, generator=g) * 2 - 1,
            "target": torch.rand(3, resolution, resolution, generator=g) * 2 - 1,
            "mask": torch.ones(1, resolution, resolution),
            "latent": torch.randn(n_latent, 512, generator=g) * 0.5,
            "has_latent": torch.tensor(True), "flipped": torch.tensor(False), "id": f"synthetic{i}",
        } for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def write_stand_in_weights(folder: Path, need_generator: bool, lpips_type: str | None,
                           need_id: bool) -> dict[str, str]:
    """Random-weight files in the real formats, for timing only: a 1024² rosinality generator checkpoint,
    a torchvision LPIPS backbone state dict, an IR-SE50 ``model_ir_se50.pth`` state dict."""
    import torch
    paths = {}
    torch.manual_seed(0)
    if need_generator:
        from render2style.stylegan2 import Generator
        G = Generator(1024)
        paths["stylegan_weights"] = str(folder / "random-stylegan2-1024.pt")
        torch.save({"g_ema": G.state_dict(), "latent_avg": G.mean_latent(4096, seed=0)}, paths["stylegan_weights"])
    if lpips_type:
        import torchvision.models as tvm
        net = (tvm.alexnet if lpips_type == "alex" else tvm.vgg16)(weights=None)
        paths["lpips_weights"] = str(folder / f"random-{lpips_type}.pth")
        torch.save(net.state_dict(), paths["lpips_weights"])
    if need_id:
        from render2style.encoders.irse import Backbone
        paths["id_weights"] = str(folder / "random-model_ir_se50.pth")
        torch.save(Backbone(112, 50, "ir_se", 0.4, True).state_dict(), paths["id_weights"])
    return paths


def train_argv(spec: dict[str, Any]) -> list[str]:
    """``train_encoder.py`` arguments of a measurement (synthetic data stands in for ``--renders``)."""
    argv = ["--dataset", "renders", "--exp_dir", spec["exp_dir"], "--device", spec["device"],
            "--amp", AMP[spec["dtype"]], "--workers", "0", "--test_workers", "0"]
    if spec["config"] == "full":
        argv += ["--renders", "<synthetic>", "--output_size", "1024", "--resolution", "256",
                 "--stylegan_weights", spec["stylegan_weights"], "--ir_se50_weights", "none",
                 "--w_norm_lambda", "0.005"]
    if spec.get("batch_size"):
        argv += ["--batch_size", str(spec["batch_size"])]
    for k in ("lpips_weights", "lpips_type", "id_weights"):
        if spec.get(k):
            argv += [f"--{k}", spec[k]]
    if spec["config"] == "full" and not spec.get("lpips_weights") and not spec.get("id_weights"):
        argv += ["--no_perceptual"]
    elif spec["config"] == "full" and not spec.get("lpips_weights"):
        argv += ["--lpips_lambda", "0"]
    elif spec["config"] == "full" and not spec.get("id_weights"):
        argv += ["--id_lambda", "0"]
    return argv


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the trainer for ``spec`` and time ``spec['steps']`` training steps after ``spec['warmup']``."""
    import torch
    from torch.utils.data import default_collate

    from render2style.inference.engine import synchronize
    from render2style.options.train_options import TrainOptions
    from render2style.train_encoder import DEMO_GENERATOR_SEED, apply_perceptual_policy
    from render2style.training.trainer import Trainer, build_model
    from render2style.utils.malloc import retain_freed_memory

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    retain_freed_memory()        # as in r2s-train-encoder (cli.run_tool): this process is spawned, not run as a tool
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    opts = TrainOptions().parse(train_argv(spec))
    if opts.demo:  # as train_encoder.prepare_demo, without making renders and targets
        opts.stylegan_weights, opts.demo_seed = "demo-random", DEMO_GENERATOR_SEED
    apply_perceptual_policy(opts)
    t0 = time.perf_counter()
    net = build_model(opts)
    data = SyntheticItems(opts.batch_size, opts.resolution, opts.input_nc, net.decoder.n_latent)
    trainer = Trainer(opts, net=net, datasets=(data, data))
    build_s = time.perf_counter() - t0
    trainer.net.train()
    batch = {k: v.to(device) if torch.is_tensor(v) else v
             for k, v in default_collate([data[i] for i in range(opts.batch_size)]).items()}
    for _ in range(spec["warmup"]):
        trainer.train_step(batch)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        trainer.train_step(batch)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    trainer.close()
    med = statistics.median(times)
    return {
        "config": spec["config"], "dtype": spec["dtype"], "batch": opts.batch_size,
        "input": f"{opts.resolution}²", "output": f"{net.decoder.size}²",
        "losses": "+".join(n[len("loss_"):] for n in trainer.objective.names if n.startswith("loss_")),
        "stand_ins": spec.get("stand_ins", []), "encoder": encoder_label(opts, net),
        "step_s_min": min(times), "step_s_median": med, "img_s": opts.batch_size / med,
        "peak_mem_mb": peak_memory_mb(device), "peak_kind": "cuda allocated" if device.type == "cuda" else "RSS",
        "steps": len(times), "warmup": spec["warmup"], "build_s": build_s,
    }


def encoder_label(opts: argparse.Namespace, net: torch.nn.Module) -> str:
    """E.g. ``IR-SE50, map2style 512 (267.1M)``: backbone depth, map2style width, trainable parameters."""
    params = sum(p.numel() for p in net.encoder.parameters()) / 1e6
    width = getattr(opts, "style_channels", None)
    return f"IR-SE{opts.encoder_num_layers}" + (f", map2style {width}" if width else "") + f" ({params:.1f}M)"


def run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    """``measure(spec)`` in a fresh (spawned) process."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(measure, spec).result()


def default_batch(config: str, device: torch.device) -> int | None:
    """None = the trainer's default (4; the demo's DEMO_DEFAULTS); the full config on a CPU: 1."""
    return 1 if config == "full" and device.type == "cpu" else None


def to_markdown(result: dict) -> str:
    lines = [f"### {result['date']} — {result['device']}", "",
             f"torch {result['torch']}; load average at start {result['load_start']}, at end {result['load_end']}; "
             f"{result['steps']} timed steps after {result['warmup']} warm-up; step = forward + losses + backward "
             "+ Ranger update (data loading excluded).", "",
             "| config | encoder (parameters) | input → output | precision | batch | losses | s/step (min) | "
             "s/step (median) | img/s | peak memory (MiB) |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        losses = r["losses"] + (f" ({', '.join(r['stand_ins'])} random: timing only)" if r["stand_ins"] else "")
        lines.append(f"| {r['config']} | {r['encoder']} | {r['input']} → {r['output']} | {r['dtype']} | {r['batch']} | "
                     f"{losses} | {r['step_s_min']:.3f} | {r['step_s_median']:.3f} | {r['img_s']:.3g} | "
                     f"{r['peak_mem_mb']:.0f} ({r['peak_kind']}) |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    import torch

    from render2style.inference.engine import pick_device
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    warn_if_busy(device)
    result = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "device": device_description(device),
              "torch": torch.__version__, "load_start": load_average(), "steps": args.steps,
              "warmup": args.warmup, "rows": []}
    with tempfile.TemporaryDirectory(prefix="r2s-bench-train-") as tmp:
        stand = {}
        if "full" in args.configs.split(","):
            stand = write_stand_in_weights(
                Path(tmp), need_generator=args.stylegan_weights is None,
                lpips_type=args.lpips_type if args.timing_only and not args.lpips_weights else None,
                need_id=args.timing_only and not args.id_weights)
            if args.stylegan_weights is None:
                log.warning("full config: StyleGAN2 1024² config-f with RANDOM weights (timing only)")
        for config in args.configs.split(","):
            for dtype in args.dtypes.split(","):
                spec = {"config": config, "dtype": dtype, "device": str(device), "threads": args.threads,
                        "batch_size": args.batch_size or default_batch(config, device),
                        "steps": args.steps, "warmup": args.warmup, "lpips_type": args.lpips_type,
                        "exp_dir": str(Path(tmp) / f"{config}-{dtype}"), "stand_ins": [],
                        "stylegan_weights": args.stylegan_weights or stand.get("stylegan_weights"),
                        "lpips_weights": args.lpips_weights, "id_weights": args.id_weights}
                if config == "full":
                    for key, name in (("lpips_weights", "LPIPS"), ("id_weights", "ID")):
                        if not spec[key] and key in stand:
                            spec[key] = stand[key]
                            spec["stand_ins"].append(name)
                row = measure(spec) if args.in_process else run_isolated(spec)
                log.info("%s %s batch %d (%s): %.3f s/step min, %.3f median, %.2f img/s, peak %.0f MiB %s",
                         config, dtype, row["batch"], row["losses"], row["step_s_min"], row["step_s_median"],
                         row["img_s"], row["peak_mem_mb"], row["peak_kind"])
                result["rows"].append(row)
    result["load_end"] = load_average()
    if args.json:
        atomic_write_json(result, args.json)
    text = to_markdown(result)
    print(text)
    if args.markdown:
        append_markdown(args.markdown, text)
        log.info("appended results to %s", args.markdown)
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
