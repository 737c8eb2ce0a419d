"""Seconds per teacher step (sampling, CS-ANNS, projection, selection) and per image.

Configurations (the speed target is <= 60 s per image for each):
  demo   the CPU preset on the 64² demo generator, torch limited to ``--cpu_threads`` (2) threads;
  r256   the paper's step structure at reduced counts on a random Generator(256) (64 samples, 4 CS-ANNS outer
         iterations of 8 inner steps over 512 proposals, 50 projector steps, 1 seed; losses at 256²), on
         the CPU with ``--cpu_threads`` threads: minutes per image where the paper's counts would take hours;
  paper  the paper's settings on a full-size, randomly initialised Generator(1024) on CUDA (timings only).

Besides seconds, each row counts generator passes per image (images synthesised, and how many of them
were differentiated), which do not depend on the machine's load.

    r2s-benchmark-teacher                                   # demo (+ paper when CUDA exists)
    r2s-benchmark-teacher --configs demo,r256 --cpu_threads 1
    r2s-benchmark-teacher --configs paper --lpips_weights vgg16-397923af.pth --out docs/BENCHMARKS.md

Perceptual terms: real LPIPS/VGG-16 with ``--lpips_weights``; ``--random_perceptual`` builds them with random
backbone weights (same cost, meaningless values: timings only); otherwise they are dropped (as --no_perceptual).
Every printed row says which. CUDA timings are synchronized (the teacher's StepTimer).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.cli import add_tool_info
from render2style.options.validators import int_at_least
from render2style.teacher.methods import METHODS

if TYPE_CHECKING:           # torch and the teacher load after parsing, so --help stays fast
    from render2style.teacher import PerceptualNets, TeacherConfig

log = logging.getLogger(__name__)

STEPS = ("sampling", "csanns", "projector", "selection")
COLUMNS = ("config", "device", "generator", "perceptual", "method", "seeds", "batch", *STEPS, "total s/img",
           "G images/img", "G backward/img", "priors s (once)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-benchmark-teacher", "render2style.scripts.benchmark_teacher", [
        "r2s-benchmark-teacher                                   # demo (+ paper when CUDA exists)",
        "r2s-benchmark-teacher --configs demo,r256 --cpu_threads 1",
        "r2s-benchmark-teacher --configs paper --lpips_weights vgg16-397923af.pth --out docs/BENCHMARKS.md"])
    p.add_argument("--configs", help="comma-separated subset of demo,r256,paper; unset: demo, plus paper when "
                                     "CUDA exists")
    p.add_argument("--method", choices=METHODS, default="garbin", help="teacher method to time")
    p.add_argument("--device", default="cuda", help="device of the paper configuration")
    p.add_argument("--cpu_threads", type=int, default=2, help="torch threads of the CPU configurations (demo, r256)")
    p.add_argument("--lpips_weights", help="LPIPS backbone weights (real perceptual terms)")
    p.add_argument("--vgg_weights", help="VGG-16 weights (Image2StyleGAN)")
    p.add_argument("--random_perceptual", action="store_true",
                   help="timings only: LPIPS/VGG-16 with random backbone weights when no weights are given")
    p.add_argument("--seeds", type=int, help="seeds per image instead of the configuration's (paper: 10)")
    p.add_argument("--repeats", type=int_at_least(1), default=1,
                   help="timed teacher runs per configuration (mean per image reported)")
    p.add_argument("--batch", type=int_at_least(1), default=1,
                   help="renders per teacher run (run_teacher_batch; r2s-generate-targets --batch): seconds per "
                        "image are the run's over its size")
    p.add_argument("--out", help="append the result rows to this markdown file")
    return p


def random_perceptual(cfg: TeacherConfig, device: str) -> PerceptualNets:
    """LPIPS / VGG-16 with random backbones: the same computation as the real ones, for timing only."""
    import lpips
    from torchvision.models import vgg16

    from render2style.teacher import PerceptualNets
    log.warning("TIMINGS ONLY: perceptual networks with RANDOM backbone weights")
    net = lpips.LPIPS(pretrained=True, net=cfg.lpips_net, pnet_rand=True, verbose=False)
    vgg = vgg16(weights=None).features
    return PerceptualNets(net.eval().requires_grad_(False).to(device), vgg.eval().requires_grad_(False).to(device))


def perceptual_for(args, cfg: TeacherConfig, device: str):
    """(perceptual argument of run_teacher, label for the table)."""
    from render2style.teacher import PerceptualNets
    if args.lpips_weights:
        return PerceptualNets.load(args.lpips_weights, args.vgg_weights, cfg.lpips_net,
                                   need_vgg=args.method == "image2stylegan", device=device), "pretrained"
    if args.random_perceptual:
        return random_perceptual(cfg, device), "random (timing)"
    return False, "off"


def setup(name: str, args):
    """(G, cfg, device, render size, generator label) of a configuration."""
    import torch

    from render2style.stylegan2 import Generator, demo_generator
    from render2style.teacher import TeacherConfig
    if name == "demo":
        torch.set_num_threads(args.cpu_threads)
        return demo_generator(0), TeacherConfig.demo(), "cpu", 256, "demo 64²"
    if name == "r256":
        torch.set_num_threads(args.cpu_threads)
        torch.manual_seed(0)
        G = Generator(256, channel_multiplier=1).eval()
        cfg = TeacherConfig(n_samples=64, csanns_outer=4, proj_steps=50, n_seeds=1, seed_batch=1, select_size=256,
                            prior_samples=2000, chunk=16)
        return G, cfg, "cpu", 256, "random Generator(256), channel multiplier 1"
    if name == "paper":
        if not torch.cuda.is_available() and args.device.startswith("cuda"):
            raise SystemExit("the paper configuration needs CUDA (or pass --device cpu and be patient)")
        torch.manual_seed(0)
        G = Generator(1024).to(args.device).eval()
        return G, TeacherConfig(), args.device, 1024, "random Generator(1024)"
    raise SystemExit(f"unknown configuration {name!r} (expected demo, r256 or paper)")


class PassCounter:
    """Counts the images ``G.synthesis`` makes, and those made with gradients on (each then has a backward)."""

    def __init__(self, G):
        self.images = self.backward = 0
        self._synthesis = G.synthesis
        G.synthesis = self

    def __call__(self, latent, *args, **kwargs):
        import torch
        self.images += latent.shape[0]
        if torch.is_grad_enabled() and latent.requires_grad:
            self.backward += latent.shape[0]
        return self._synthesis(latent, *args, **kwargs)


def benchmark(name: str, args) -> dict:
    """Time one configuration: priors once, a warm-up image, then ``--repeats`` timed images."""
    import torch

    from render2style.datasets import build_render_source, make_demo_renders
    from render2style.teacher import resolve_priors, run_teacher
    from render2style.teacher.job import teacher_input
    from render2style.teacher.run import run_teacher_batch
    G, cfg, device, render_size, gen_label = setup(name, args)
    if args.seeds:
        cfg = cfg.replace(n_seeds=args.seeds, seed_batch=min(cfg.seed_batch, args.seeds))
    perceptual, perc_label = perceptual_for(args, cfg, device)
    t0 = time.perf_counter()
    cfg = resolve_priors(G, cfg, device)
    priors_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_renders(tmp, n=args.repeats * args.batch + 1, size=render_size)
        source = build_render_source("renders", tmp)
        inputs = [teacher_input(source[i], device) for i in range(len(source))]
    warm = cfg.replace(n_samples=8, csanns_outer=1, csanns_proposals=8, csanns_inner=1, proj_steps=2,
                       n_seeds=1, seed_batch=1, i2s_steps=2)
    run_teacher(args.method, G, inputs[0], warm, perceptual, seed=0)  # lazy init, kernel selection
    seconds, counter = [], PassCounter(G)
    for k in range(1, len(inputs), args.batch):
        runs = run_teacher_batch(args.method, G, inputs[k:k + args.batch], cfg, perceptual, seed=0,
                                 render_ids=[str(i) for i in range(k, k + args.batch)])
        seconds += [r.metrics["seconds"] for r in runs]
    n = len(seconds)
    mean = {k: sum(s.get(k, 0.0) for s in seconds) / len(seconds) for k in (*STEPS, "total")}
    if args.method != "garbin":  # the baselines report one optimisation step under their own name
        mean["projector"] = sum(s.get(args.method, 0.0) for s in seconds) / len(seconds)
    return {"config": name, "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else
            f"cpu ({torch.get_num_threads()} threads)", "generator": gen_label, "perceptual": perc_label,
            "method": args.method, "seeds": cfg.n_seeds if args.method == "garbin" else 1, "batch": args.batch,
            **{k: round(mean[k], 2) for k in STEPS}, "total s/img": round(mean["total"], 2),
            "G images/img": counter.images // n, "G backward/img": counter.backward // n,
            "priors s (once)": round(priors_seconds, 2)}


def markdown(rows: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    import torch

    from render2style.utils.io import atomic_write_text
    names = args.configs.split(",") if args.configs else ["demo"] + (["paper"] if torch.cuda.is_available() else [])
    threads, rows = torch.get_num_threads(), []
    for name in names:
        torch.set_num_threads(threads)  # the demo configuration limits them; the others use the default
        rows.append(benchmark(name.strip(), args))
    print(markdown(rows), end="")
    if args.out:
        out = Path(args.out)
        old = out.read_text() if out.is_file() else ""
        prefix = old.rstrip("\n") + "\n\n" if old.strip() else ""
        atomic_write_text(prefix + markdown(rows), out)  # each run appends its own table, header included
    return rows


if __name__ == "__main__":
    main()
