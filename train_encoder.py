"""Train the amortized pSp encoder: ``r2s-train-encoder --dataset renders [options]``.

With no other argument it runs the demo world on the CPU (about 3 minutes measured on a 2-core CPU): the
64x64 demo face generator (``--demo_generator random``: the seeded random one), procedural demo renders and demo
targets from Garbin et al.'s teacher (steps 1-4 with the ``TeacherConfig.demo()`` CPU preset, 68 s for the
24 renders there while another job ran; made under ``<exp_dir>/demo_data`` when missing), a light pSp encoder
(IR-SE18 body, 128-wide map2style blocks), LPIPS/ID terms off unless weight files are given. With
``--stylegan_weights``, ``--ir_se50_weights``, ``--renders`` and ``--targets`` it is the real, full-size job. Multi-GPU:
``torchrun --nproc_per_node N -m render2style.train_encoder ...`` (``--batch_size`` is per GPU).
An existing ``--exp_dir`` with ``checkpoints/latest.pt`` is resumed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.options.train_options import TrainOptions

if TYPE_CHECKING:  # torch and the trainer load after the options are parsed (a fast --help)
    from render2style.training.distributed import DistEnv

log = logging.getLogger("render2style.train_encoder")

DEMO_RENDERS = 24        # the datasets' hash split keeps about 10 % for the test split
# Demo teacher: Garbin et al.'s steps 1-4 (sampling with the dlib landmark term, CS-ANNS, masked projector,
# interpolation and SSIM selection) with the TeacherConfig.demo() preset, teacher.job.DEMO_BATCH renders a run: with
# the face generator a median 2.8 s per render on a 2-core CPU shared with another 2-thread job (measured 2026-12-02;
# 3.5 s one render a run on a free CPU). Without LPIPS weights its perceptual terms are off (logged by the teacher).
DEMO_TEACHER_METHOD = "garbin"
DEMO_GENERATOR_SEED = 0


def prepare_demo(opts: argparse.Namespace, env: DistEnv) -> None:
    """Demo world: a demo generator (the face generator unless ``--demo_generator random``), renders and
    projector targets under ``<exp_dir>/demo_data`` (rank 0 makes what is missing; the other ranks wait)."""
    from render2style.options.demo_names import demo_kind
    from render2style.training.distributed import barrier

    data = Path(opts.exp_dir) / "demo_data"
    opts.renders = str(data / "renders")
    opts.targets = opts.targets or str(data / "targets")
    opts.stylegan_weights = opts.stylegan_weights or "demo"
    opts.demo_seed = DEMO_GENERATOR_SEED
    kind = demo_kind(opts.stylegan_weights)
    own_targets = Path(opts.targets) == data / "targets"
    if kind is None and own_targets:
        raise SystemExit(f"the demo world makes its targets with a demo generator, not --stylegan_weights "
                         f"{opts.stylegan_weights}: pass --renders and --targets made for that generator "
                         "(r2s-generate-targets), or --stylegan_weights demo | demo-random")
    if env.is_main:
        log.warning("DEMO world: %s, procedural renders in %s, teacher targets in %s",
                    {"faces": "demo face generator (64², UTKFace, not photoreal)",
                     "random": "seeded random demo generator (colour noise)"}.get(kind, opts.stylegan_weights),
                    opts.renders, opts.targets)
        _make_demo_renders(Path(opts.renders), opts)
        if own_targets:
            _make_demo_targets(opts, kind)
    barrier(env)


def _make_demo_renders(root: Path, opts: argparse.Namespace) -> None:
    from render2style.datasets.demo_renders import make_demo_renders
    if root.is_dir() and any(root.glob("demo_*.png")):
        return
    log.info("making %d demo renders in %s", DEMO_RENDERS, root)
    make_demo_renders(root, DEMO_RENDERS, seed=opts.seed, size=max(64, opts.resolution))


def _make_demo_targets(opts: argparse.Namespace, kind: str) -> None:
    from render2style.datasets import build_render_source
    from render2style.stylegan2 import load_demo
    from render2style.teacher import TeacherConfig
    from render2style.teacher.job import DEMO_BATCH, generate_targets
    G, latent_avg, name = load_demo(kind, seed=opts.demo_seed)
    cfg = TeacherConfig.demo()
    if latent_avg is not None:
        cfg = cfg.replace(w_avg=latent_avg[0])
    log.warning("DEMO targets: Garbin et al. teacher (method %s) with the TeacherConfig.demo() CPU preset "
                "(%d samples, %d CS-ANNS rounds, %d projector steps, %d seeds), perceptual (LPIPS) terms off. "
                "Real targets: r2s-generate-targets with LPIPS weights",
                DEMO_TEACHER_METHOD, cfg.n_samples, cfg.csanns_outer, cfg.proj_steps, cfg.n_seeds)
    from tqdm.contrib.logging import logging_redirect_tqdm
    source = build_render_source("renders", opts.renders)
    t0 = time.perf_counter()
    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        generate_targets(source, opts.targets, G, cfg, DEMO_TEACHER_METHOD, False,
                         shard=(0, 1), seed=opts.seed, generator_name=name, batch=DEMO_BATCH)
    log.info("demo targets made in %.0f s", time.perf_counter() - t0)


def _id_weights_given(opts: argparse.Namespace) -> bool:
    return bool(opts.id_weights or (opts.id_backbone == "ir_se50" and opts.ir_se50_weights))


def apply_perceptual_policy(opts: argparse.Namespace) -> None:
    """``--no_perceptual`` (explicit) or the demo without weight files drop the LPIPS and ID terms,
    loudly; otherwise missing weights stop the run with a message naming the file (criteria)."""
    dropped, reason = [], ""
    if opts.no_perceptual:
        dropped = [n for n, lam in (("LPIPS", opts.lpips_lambda), ("ID", opts.id_lambda)) if lam > 0]
        reason = "--no_perceptual"
    elif opts.demo:
        if opts.lpips_lambda > 0 and not opts.lpips_weights:
            dropped.append("LPIPS")
        if opts.id_lambda > 0 and not _id_weights_given(opts):
            dropped.append("ID")
        reason = "no weights"
    if dropped:
        if "LPIPS" in dropped:
            opts.lpips_lambda = 0.0
        if "ID" in dropped:
            opts.id_lambda = 0.0
        what = " and ".join(dropped) + (" terms" if len(dropped) > 1 else " term")
        log.warning("DEMO: %s disabled: %s", what, reason)
    opts.perceptual_dropped = dropped


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = TrainOptions().parse(argv)
    if opts.exp_dir is None:
        log.error("--exp_dir is required outside the demo world (--dataset renders without --renders)")
        return 2
    from render2style.training.checkpointing import BEST, LATEST
    from render2style.training.distributed import cleanup_distributed, setup_distributed
    from render2style.training.trainer import NonFiniteLossError, Trainer

    env = setup_distributed(opts.device)
    if not env.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if (Path(opts.exp_dir) / "checkpoints" / LATEST).is_file() and not opts.resume:
        log.info("%s exists with checkpoints/%s: resuming it", opts.exp_dir, LATEST)
    if opts.demo:
        prepare_demo(opts, env)
    apply_perceptual_policy(opts)
    trainer = Trainer(opts, env=env)
    try:
        trainer.train()
    except NonFiniteLossError as e:
        log.error("%s", e)
        return 1
    finally:
        trainer.close()
        cleanup_distributed()
    if env.is_main:
        ckpt = Path(opts.exp_dir) / "checkpoints"
        best = ckpt / BEST if (ckpt / BEST).is_file() else ckpt / LATEST
        log.info("done: %s (latest: %s). Encode with: r2s-encode --checkpoint %s --input %s --out %s",
                 best, ckpt / LATEST, best, opts.renders, Path(opts.exp_dir) / "encoded")
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
