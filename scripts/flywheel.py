"""The flywheel's measurement: the full teacher against the encoder-initialised teacher on the same renders.

For every render: the full teacher (Garbin et al.'s steps 1-4 from the prior), the encoder alone (E(x)) and
the teacher started from E(x) (``--init_mode replace``: the projector from E(x) for ``--init_steps`` steps,
``--init_batch`` renders refined together, each as it would be alone, its seconds the batch's over its size (the
full teacher runs the same batches: ``teacher.run.run_teacher_batch``);
``candidate``: steps 1-4 with E(x) as one more step-1 candidate). Each result is measured the same way
(``teacher.quality.measure``): eq. 1 (landmark-free, as the selection sees it), SSIM inside Ia, the landmark
error (``--landmarks``: dlib's 68 points, or MTCNN's 5, which also finds the faces of a 64² generator), and seconds
per image. The table gives medians and, per render, the ratio of the
encoder-initialised teacher's eq. 1 loss to the full teacher's. Rows go to ``--out_csv`` after every batch
(a killed run keeps them); the Markdown table to stdout and ``--out_md``.

``--warmup`` batches first run through both teachers untimed. Use renders the encoder was not trained on (the
demo: ``--demo_seed`` other than the training renders' seed).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from render2style.cli import add_tool_info
from render2style.options.validators import int_at_least
from render2style.scripts.benchmark_teacher_quality import add_landmark_options
from render2style.scripts.generate_targets import add_init_options, alphas_overridden

log = logging.getLogger(__name__)

FIELDS = ("render", "teacher", "loss", "ssim", "landm_err", "landmarks", "seconds")
TEACHERS = ("full", "encoder", "encoder_init")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_tool_info(p, "r2s-flywheel", "render2style.scripts.flywheel", [
        "r2s-flywheel --checkpoint experiments/demo/checkpoints/best_model.pt --demo_seed 7 --limit 8 "
        "--out_md flywheel.md",
        "r2s-flywheel --checkpoint enc.pt --renders renders/ --stylegan_weights ffhq-1024 --preset paper "
        "--lpips_weights vgg16 --init_steps 100",
        "r2s-flywheel --rounds 24,96 --demo_seed 0 --out runs/flywheel --train_steps 300,300   # the rounds (DEMO)"])
    p.add_argument("--checkpoint", help="the encoder (pSp-layout checkpoint or registry name), trained for the "
                                        "teacher's generator; --rounds: the encoder round 1 starts from (default: "
                                        "round 1 runs the full teacher)")
    p.add_argument("--rounds", help="run the flywheel's rounds instead (scripts/flywheel_rounds.py): cumulative "
                                    "render counts, e.g. 24,96 (round 1: renders 0-23, round 2: 24-95)")
    p.add_argument("--out", default="flywheel_rounds", help="--rounds: the rounds' folder (an existing one resumes)")
    p.add_argument("--train_steps", default="300", help="--rounds: encoder training steps, one value or one per "
                                                        "round (each round fine-tunes the previous encoder)")
    p.add_argument("--train_arg", dest="train_args", action="append", default=[], metavar="ARG",
                   help="--rounds: one more r2s-train-encoder argument, e.g. --train_arg=--batch_size=8 (repeatable)")
    p.add_argument("--renders", help="render folder (default: DEMO renders made with --demo_seed in --work_dir)")
    p.add_argument("--dataset", default="renders", help="render dataset layout of --renders")
    p.add_argument("--demo_seed", type=int, default=7, help="seed of the DEMO renders (measured: not the encoder's "
                                                            "training renders'; --rounds: the rounds' renders)")
    p.add_argument("--work_dir", default="flywheel_work", help="where the DEMO renders are made")
    p.add_argument("--limit", type=int_at_least(1), default=8, help="number of renders")
    p.add_argument("--stylegan_weights", help="teacher's generator (path or registry name); default: the demo one")
    p.add_argument("--preset", choices=["demo", "paper"], default=None,
                   help="teacher step counts (default: demo without --stylegan_weights, else paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="TeacherConfig override for both teachers, e.g. --set n_seeds=4 (repeatable)")
    add_init_options(p)
    p.add_argument("--init_batch", type=int_at_least(1), default=8,
                   help="renders per teacher run, for both teachers (replace: one projector run; the full teacher: "
                        "one batched search), each as it would be alone (seconds per target: the batch's over its "
                        "size)")
    p.add_argument("--init_set", dest="init_overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="TeacherConfig override for the encoder-initialised teacher only (candidate: its smaller "
                        "step counts, e.g. --init_set n_seeds=1)")
    p.add_argument("--warmup", type=int_at_least(0), default=1,
                   help="batches of --init_batch renders (the first ones) run through both teachers untimed first, so "
                        "one-time and per-shape costs stay out of the timings")
    p.add_argument("--lpips_weights", help="LPIPS backbone (path or registry name); default: perceptual terms off")
    add_landmark_options(p)
    p.add_argument("--seed", type=int, default=0, help="base seed of both teachers' random streams")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out_csv", help="per-render rows, rewritten after every batch")
    p.add_argument("--out_md", help="the Markdown table")
    return p


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def markdown_table(rows: list[dict], header: str) -> str:
    """Medians per teacher, with speed-up and eq. 1 ratio against the full teacher on the same renders."""
    by = {(r["render"], r["teacher"]): r for r in rows}
    renders = sorted({r["render"] for r in rows})
    full_s = _median(by[(t, "full")]["seconds"] for t in renders if (t, "full") in by)
    lines = [header, "", "| teacher | eq. 1 loss | SSIM in Ia | landmark error (% width, found) | s/image | "
             "speed-up vs full | eq. 1 / full (per render) | renders with eq. 1 ≤ full |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"full": "full teacher (steps 1-4)", "encoder": "encoder alone E(x)",
             "encoder_init": "encoder-initialised teacher"}
    for teacher in TEACHERS:
        here = [by[(t, teacher)] for t in renders if (t, teacher) in by]
        if not here:
            continue
        found = [r["landm_err"] for r in here if r["landm_err"] is not None]
        pairs = [(by[(t, teacher)], by[(t, "full")]) for t in renders if (t, teacher) in by and (t, "full") in by]
        seconds = _median(r["seconds"] for r in here)
        ratio = _median(a["loss"] / b["loss"] for a, b in pairs if b["loss"])
        no_worse = sum(a["loss"] <= b["loss"] for a, b in pairs)
        speed = full_s / seconds if full_s and seconds else None
        lines.append(f"| {names[teacher]} | {_fmt(_median(r['loss'] for r in here))} | "
                     f"{_fmt(_median(r['ssim'] for r in here))} | {_fmt(_median(found), 3)} ({len(found)}/{len(here)}) "
                     f"| {_fmt(seconds, 3)} | {_fmt(speed, 3)}× | {_fmt(ratio, 3)} | {no_worse}/{len(pairs)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds:
        from render2style.scripts.flywheel_rounds import run_rounds
        return run_rounds(args)
    if args.checkpoint is None:
        parser.error("--checkpoint (the encoder to measure) is required without --rounds")
    if alphas_overridden(args, args.overrides):
        log.warning("--set interp_alphas applies to the full teacher only: --init_mode replace blends by --init_alphas")
    if alphas_overridden(args, args.init_overrides):
        parser.error("--init_set interp_alphas does not apply to --init_mode replace, whose eq. 4 candidates blend "
                     "by --init_alphas (give that instead)")
    import torch  # after parsing: --help stays fast

    from render2style.datasets import build_render_source, make_demo_renders
    from render2style.scripts.benchmark_teacher_quality import landmark_error, write_csv
    from render2style.scripts.generate_targets import default_preset, load_encoder_init, load_generator_arg
    from render2style.teacher import PerceptualNets, TeacherConfig, resolve_priors
    from render2style.teacher.encoder_init import run_encoder_init_batch
    from render2style.teacher.job import teacher_input
    from render2style.teacher.quality import measure
    from render2style.teacher.run import build_problem, frozen, run_teacher_batch
    from render2style.utils.io import atomic_write_text
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    G, w_avg, g_name = load_generator_arg(args.stylegan_weights, device)
    preset = args.preset or default_preset(args.stylegan_weights)
    cfg = (TeacherConfig.demo() if preset == "demo" else TeacherConfig()).replace(
        **TeacherConfig.parse_overrides(args.overrides))
    if w_avg is not None:
        cfg = cfg.replace(w_avg=w_avg)
    perceptual = False
    if args.lpips_weights:
        perceptual = PerceptualNets.load(args.lpips_weights, None, lpips_net=cfg.lpips_net, device=device)
    cfg = resolve_priors(G, cfg, device, args.seed)
    init_cfg = cfg.replace(**TeacherConfig.parse_overrides(args.init_overrides))
    init = load_encoder_init(args, args.checkpoint, device)
    init.check_generator(G)
    if args.renders is None:
        root = Path(args.work_dir) / f"demo_renders_seed{args.demo_seed}"
        if not (root / "annotations.json").is_file():
            make_demo_renders(root, n=args.limit, seed=args.demo_seed)
        source = build_render_source("renders", root)
    else:
        source = build_render_source(args.dataset, args.renders)
    landmarks = landmark_error(args, G.size)
    nets = perceptual if perceptual is not False else None
    ids = sorted(source.ids)[:args.limit]
    for start in range(0, min(args.warmup * args.init_batch, len(ids)), args.init_batch):
        batch = ids[start:start + args.init_batch]
        warm = [teacher_input(source[source.ids.index(rid)], device) for rid in batch]
        run_teacher_batch("garbin", G, warm, cfg, perceptual, seed=args.seed, render_ids=batch)
        run_encoder_init_batch(G, init, warm, init_cfg, perceptual, seed=args.seed, render_ids=batch)
    rows, t0 = [], time.perf_counter()
    for start in range(0, len(ids), args.init_batch):
        batch = ids[start:start + args.init_batch]
        inps = [teacher_input(source[source.ids.index(rid)], device) for rid in batch]
        fulls = run_teacher_batch("garbin", G, inps, cfg, perceptual, seed=args.seed, render_ids=batch)
        fasts = run_encoder_init_batch(G, init, inps, init_cfg, perceptual, seed=args.seed, render_ids=batch)
        for rid, inp, full, fast in zip(batch, inps, fulls, fasts):
            codes = {"full": (full.w_plus, full.metrics["seconds"]["total"]),
                     "encoder": (next(c["w_plus"] for c in fast.candidates if c["step"] == "encoder"),
                                 fast.metrics["seconds"]["encoder"]),
                     "encoder_init": (fast.w_plus, fast.metrics["seconds"]["total"])}
            with frozen(G):
                prob = build_problem(G, inp, cfg, nets, device)
                for teacher, (w, seconds) in codes.items():
                    row = measure(G, prob, w[None].to(device), cfg, inp.image, landmarks, None)[0]
                    rows.append({"render": rid, "teacher": teacher, "loss": row["loss"], "ssim": row["ssim"],
                                 "landm_err": row["landm_err"], "landmarks": landmarks.detector if landmarks else None,
                                 "seconds": seconds})
            log.info("render %s: eq. 1 %.4g full, %.4g encoder-initialised; %.2f s vs %.2f s (%.0f s so far)", rid,
                     rows[-3]["loss"], rows[-1]["loss"], rows[-3]["seconds"], rows[-1]["seconds"],
                     time.perf_counter() - t0)
        if args.out_csv:
            write_csv(rows, FIELDS, args.out_csv)
    settings = init.settings(init_cfg)
    alphas = ",".join(f"{a:g}" for a in init.interp_alphas)
    mode = (f"replace, {args.init_steps} projector steps ({args.init_schedule} schedule, lr {settings.lr:g}), "
            f"eq. 4 α {alphas}, batches of {args.init_batch}" if args.init_mode == "replace" else "candidate")
    mode += " " + " ".join(args.init_overrides) if args.init_overrides else ""
    overrides = " " + " ".join(args.overrides) if args.overrides else ""
    header = (f"**Flywheel** ({len(ids)} renders, medians): generator {g_name} ({G.size}²), preset {preset}"
              f"{overrides}, encoder {args.checkpoint}, init mode {mode}, perceptual terms "
              f"{'LPIPS ' + cfg.lpips_net if perceptual is not False else 'off (demo)'}, device {device}, "
              f"{args.threads} threads, landmarks {landmarks.detector if landmarks else 'off'}.")
    text = markdown_table(rows, header) + "\n"
    print(text)
    if args.out_md:
        atomic_write_text(text, args.out_md)
    return rows


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
