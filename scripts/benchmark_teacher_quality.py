"""What each teacher step gains: eq. 1 loss, SSIM inside Ia, W+ error, landmark error and seconds per step.

Two kinds of targets, each optional:
  closed loop  ``--n`` images of the generator itself under a render-like domain shift (posterised, colour
               shifted, blurred; elliptical face mask), so the W+ code that made them (w_true) is known;
  renders      a folder of real renders (``--renders DIR --dataset NAME``, any supported layout).

Rows per target: the start (w̄), Garbin et al.'s steps (sampling, CS-ANNS, projector, interpolation (eq. 4):
the candidate with the lowest eq. 1 loss after that step; selection: the code step 4 picks among all of them
by SSIM), and the Image2StyleGAN and projector baselines. The Markdown table gives medians over the targets,
each step's median eq. 1 ratio to the step before (to w̄ for the baselines) and says "no gain" where a step
does not lower it; the selection maximises SSIM over a set that holds the rows above it, so its SSIM gain
holds by construction and the table shows what it does to eq. 1 instead.

    r2s-benchmark-teacher-quality --n 8 --out_md docs/teacher_quality.md                 # demo generator, CPU
    r2s-benchmark-teacher-quality --n 0 --renders ../shared/data/facesynthetics --dataset facesynthetics --limit 8
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from render2style.cli import add_tool_info
from render2style.teacher.methods import LANDMARK_DETECTORS, METHODS

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-benchmark-teacher-quality", "render2style.scripts.benchmark_teacher_quality", [
        "r2s-benchmark-teacher-quality --n 8                  # closed loop, demo generator and preset",
        "r2s-benchmark-teacher-quality --n 4 --renders ../shared/data/facesynthetics --dataset facesynthetics"])
    p.add_argument("--n", type=int, default=8, help="closed-loop targets (0: none)")
    p.add_argument("--renders", help="folder of real renders to benchmark on as well")
    p.add_argument("--dataset", default="renders", help="layout of --renders: renders | facesynthetics | images")
    p.add_argument("--limit", type=int, default=8, help="renders used from --renders (sorted ids)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--stylegan_weights", help="StyleGAN2 checkpoint; default: the seeded DEMO generator")
    p.add_argument("--lpips_weights", help="LPIPS backbone weights; without them the perceptual terms are dropped")
    p.add_argument("--vgg_weights", help="VGG-16 weights for Image2StyleGAN (default: --lpips_weights for vgg)")
    p.add_argument("--preset", choices=("demo", "paper"), default="demo", help="teacher settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any TeacherConfig field, e.g. --set csanns_outer=12 (repeatable)")
    add_landmark_options(p)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", help="where the teacher runs; unset: cuda when available, else cpu")
    p.add_argument("--seed", type=int, default=0, help="base seed of the teacher and of the closed-loop targets")
    p.add_argument("--out_csv", help="write every row here")
    p.add_argument("--out_md", help="write the Markdown table here")
    return p


def add_landmark_options(p: argparse.ArgumentParser) -> None:
    """``--landmarks`` and ``--no_landmarks`` (this tool and r2s-flywheel)."""
    p.add_argument("--landmarks", choices=("auto", *LANDMARK_DETECTORS), default="auto",
                   help="detector of the landmark error: dlib (68 points), mtcnn (5 points; it also finds the faces "
                        "of a 64² generator), auto: mtcnn below 256², else dlib")
    p.add_argument("--no_landmarks", action="store_true", help="skip the landmark error")


def landmark_error(args: argparse.Namespace, size: int):
    """The ``teacher.quality.LandmarkError`` that ``add_landmark_options`` chose for a ``size``² generator, or None."""
    from render2style.teacher.quality import LandmarkError
    if args.no_landmarks:
        return None
    return LandmarkError(args.landmarks if args.landmarks != "auto" else "mtcnn" if size < 256 else "dlib")


def write_csv(rows: list[dict], fields: Sequence[str], path: str) -> None:
    """All rows so far, written atomically."""
    from render2style.utils.io import atomic_write_text
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buf.getvalue(), path)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    import torch  # after parsing: --help stays fast

    from render2style.teacher import PerceptualNets, TeacherConfig, resolve_priors
    from render2style.teacher.closed_loop import closed_loop_cases
    from render2style.teacher.quality import FIELDS, benchmark_target, markdown_table
    from render2style.utils.io import atomic_write_text
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    from render2style.scripts.generate_targets import load_generator_arg
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"error: --methods: unknown {unknown}; expected a subset of {list(METHODS)}")
    G, w_avg, g_name = load_generator_arg(args.stylegan_weights, args.device)
    cfg = TeacherConfig.demo() if args.preset == "demo" else TeacherConfig()
    cfg = cfg.replace(**TeacherConfig.parse_overrides(args.overrides))
    if w_avg is not None:
        cfg = cfg.replace(w_avg=w_avg)
    perceptual = False                      # the demo option, stated in the table's header
    if args.lpips_weights:
        perceptual = PerceptualNets.load(args.lpips_weights, args.vgg_weights, lpips_net=cfg.lpips_net,
                                         need_vgg="image2stylegan" in methods, device=args.device)
    cfg = resolve_priors(G, cfg, args.device, args.seed)
    landmarks = landmark_error(args, G.size)
    targets = [("closed loop", c.id, c.input, c.w_true) for c in closed_loop_cases(G, args.n, seed=args.seed)]
    if args.renders:
        from render2style.datasets import build_render_source
        from render2style.teacher.job import teacher_input
        source = build_render_source(args.dataset, args.renders)
        for rid in sorted(source.ids)[:args.limit]:
            targets.append((f"renders ({Path(args.renders).name})", rid, teacher_input(source[source.ids.index(rid)]),
                            None))
    rows, agreement, t0 = [], {}, time.perf_counter()
    for i, (kind, tid, inp, w_true) in enumerate(targets):
        found = benchmark_target(G, inp, cfg, perceptual, methods, tid, kind, w_true, landmarks, args.seed, agreement)
        rows += [dict(r, landmarks=landmarks.detector if landmarks else None) for r in found]
        if args.out_csv:          # after every target: a killed run keeps the rows it finished
            write_csv(rows, (*FIELDS, "landmarks"), args.out_csv)
        log.info("target %d/%d (%s) done, %.0f s so far", i + 1, len(targets), tid, time.perf_counter() - t0)
    overrides = " " + " ".join(args.overrides) if args.overrides else ""
    header = (f"Generator: {g_name} ({G.size}²), preset {args.preset}{overrides}, "
              f"perceptual terms: {'LPIPS ' + cfg.lpips_net if perceptual is not False else 'off (demo)'}, "
              f"device {args.device}, {args.threads} threads, seeds {cfg.n_seeds}, seed {args.seed}, "
              f"landmarks {landmarks.detector if landmarks else 'off'}.")
    tables = [header] + [markdown_table([r for r in rows if r["source"] == s], s)
                         for s in dict.fromkeys(r["source"] for r in rows)]
    if agreement:
        tables.append("Step 1's dlib term on only the k best samples (by the landmark-free loss) picks the same "
                      "sample as the full ranking in: " + ", ".join(f"k={k}: {sum(v)}/{len(v)}"
                                                                    for k, v in sorted(agreement.items())) +
                      f" seed runs (the default is k={cfg.landmark_top_k}).")
    text = "\n\n".join(tables) + "\n"
    print(text)
    if args.out_md:
        atomic_write_text(text, args.out_md)
    return rows


if __name__ == "__main__":
    main()
