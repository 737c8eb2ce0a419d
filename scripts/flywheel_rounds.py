"""The flywheel's rounds (``r2s-flywheel --rounds N1,N2,...``): targets -> encoder -> cheaper targets -> encoder.

Round 1 computes the targets of the first N1 renders with the full teacher (or, with ``--checkpoint``, with the
teacher started from that encoder) and trains the encoder on them; round r computes the targets of renders
N(r-1)..Nr with the teacher started from round r-1's encoder (``--init_*``) and fine-tunes that encoder on all Nr
targets (``r2s-train-encoder --checkpoint_path``). Layout of ``--out``:

- ``renders/round<r>/``: the round's first Nr renders (DEMO renders of ``--demo_seed``, or links into ``--renders``,
  a ``renders``-layout folder, with its annotations);
- ``targets/``: one target folder for every round (``r2s-generate-targets``; a render's target is computed once);
- ``round<r>/``: the round's encoder experiment (``checkpoints/best_model.pt``);
- ``rounds.json`` / ``rounds.md``: per round the new targets' teacher, median seconds per target, eq. 1 and
  SSIM (their metadata rows), and the encoder.

Resumable: rerun the same command; finished rounds are kept, an interrupted one continues (the target job and the
training resume their folders). Measure an encoder on renders it was not trained on with ``r2s-flywheel
--checkpoint <out>/round<r>/checkpoints/best_model.pt``.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import statistics
from pathlib import Path

log = logging.getLogger(__name__)

#: The demo world's defaults a round does not take (it sets its own folder and steps; intervals: r2s-train-encoder's).
NOT_FROM_DEMO = ("exp_dir", "max_steps", "board_interval", "image_interval", "val_interval")


def demo_train_args() -> list[str]:
    """The light demo encoder of ``r2s-train-encoder``'s demo world (``DEMO_DEFAULTS``), for rounds on a demo
    generator."""
    from render2style.options.train_options import DEMO_DEFAULTS
    return [a for k, v in DEMO_DEFAULTS.items() if k not in NOT_FROM_DEMO for a in (f"--{k}", str(v))]


def parse_counts(text: str, what: str) -> list[int]:
    """``"24,96"`` -> ``[24, 96]``: positive integers (``what`` names the option in the error)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{what}: expected positive integers, got {text!r}")
    return values


def round_renders(args, n: int, folder: Path) -> Path:
    """The first ``n`` renders in ``folder`` (made once; a folder being made is replaced on resume)."""
    if (folder / "annotations.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.renders is None:
        from render2style.datasets import make_demo_renders
        make_demo_renders(tmp, n=n, seed=args.demo_seed)
    else:
        _link_subset(Path(args.renders), n, tmp)
    tmp.rename(folder)
    return folder


def _link_subset(root: Path, n: int, out: Path) -> None:
    """Links to the first ``n`` renders (sorted ids) of a ``renders``-layout folder, their annotations copied."""
    from render2style.datasets import build_render_source
    source = build_render_source("renders", root)
    if len(source.ids) < n:
        raise ValueError(f"{root}: --rounds needs {n} renders, the folder has {len(source.ids)}")
    ids = sorted(source.ids)[:n]
    out.mkdir(parents=True)
    for path in root.iterdir():
        stem = path.stem.removesuffix("_hair")
        if stem in ids and path.is_file():
            os.symlink(path.resolve(), out / path.name)
    annotations = root / "annotations.json"
    entries = json.loads(annotations.read_text()) if annotations.is_file() else {}
    (out / "annotations.json").write_text(json.dumps({k: v for k, v in entries.items() if k in ids}))


def _teacher_args(args, renders: Path, targets: Path, encoder: str | None) -> list[str]:
    argv = ["--renders", str(renders), "--out", str(targets), "--seed", str(args.seed), "--no_progress"]
    argv += ["--lpips_weights", args.lpips_weights] if args.lpips_weights else ["--no_perceptual"]
    for flag in ("stylegan_weights", "preset", "device"):
        if getattr(args, flag):
            argv += [f"--{flag}", str(getattr(args, flag))]
    for item in args.overrides:
        argv += ["--set", item]
    if encoder is not None:
        argv += ["--init_encoder", encoder, "--init_mode", args.init_mode, "--init_steps", str(args.init_steps),
                 "--init_schedule", args.init_schedule, "--init_batch", str(args.init_batch),
                 "--init_alphas", ",".join(str(a) for a in args.init_alphas)]
        argv += ["--init_lr", str(args.init_lr)] if args.init_lr else []
    return argv


def _train_args(args, renders: Path, targets: Path, exp_dir: Path, steps: int, start: str | None) -> list[str]:
    from render2style.options.demo_names import demo_kind
    demo = args.stylegan_weights is None or demo_kind(args.stylegan_weights) is not None
    argv = (demo_train_args() if demo else []) + ["--dataset", "renders", "--renders", str(renders), "--targets",
                                           str(targets), "--exp_dir", str(exp_dir), "--max_steps", str(steps),
                                           "--seed", str(args.seed), "--stylegan_weights",
                                           args.stylegan_weights or "demo"]
    argv += ["--no_perceptual"] if not args.lpips_weights else ["--lpips_weights", args.lpips_weights]
    argv += ["--device", args.device] if args.device else []
    argv += ["--checkpoint_path", start] if start else []
    return argv + list(args.train_args)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def round_summary(targets: Path, ids: list[str]) -> dict:
    """The metadata rows of ``ids``: count, teacher, medians of seconds, eq. 1 (``loss_total``) and SSIM."""
    rows = {r["id"]: r for r in csv.DictReader(open(targets / "metadata.csv"))}
    mine = [rows[i] for i in ids if i in rows]
    modes = sorted({r.get("init_mode") or "full" for r in mine})
    return {"targets": len(mine), "teacher": "+".join(modes),
            "seconds_per_target": _median([float(r["seconds"]) for r in mine]),
            "eq1": _median([float(r["loss_total"]) for r in mine]), "ssim": _median([float(r["ssim"]) for r in mine])}


def rounds_table(rounds: list[dict]) -> str:
    """The Markdown table of ``rounds.json``."""
    def f(v, digits=4):
        return "n/a" if v is None else f"{v:.{digits}g}"
    lines = ["| round | renders (new) | teacher of the new targets | s/target (median) | eq. 1 (median) | "
             "SSIM in Ia (median) | encoder (training steps) |", "|---|---:|---|---:|---:|---:|---|"]
    for r in rounds:
        lines.append(f"| {r['round']} | {r['renders']} ({r['targets']}) | {r['teacher']} | "
                     f"{f(r['seconds_per_target'], 3)} | {f(r['eq1'])} | {f(r['ssim'], 3)} | "
                     f"{r['encoder']} ({r['train_steps']}) |")
    return "\n".join(lines) + "\n"


def run_rounds(args) -> list[dict]:
    """Every round of ``args.rounds`` not yet in ``<out>/rounds.json``; returns all rounds' summaries."""
    import torch

    from render2style.scripts import generate_targets
    from render2style.train_encoder import main as train_encoder
    from render2style.utils.io import atomic_write_json, atomic_write_text
    if args.renders and args.dataset != "renders":
        raise ValueError(f"--rounds takes a renders-layout folder (--dataset renders), got --dataset {args.dataset}")
    torch.set_num_threads(args.threads)
    counts = parse_counts(args.rounds, "--rounds")
    steps = parse_counts(args.train_steps, "--train_steps")
    if counts != sorted(set(counts)):
        raise ValueError(f"--rounds: render counts must increase, got {args.rounds!r}")
    if len(steps) not in (1, len(counts)):
        raise ValueError(f"--train_steps: one value or one per round ({len(counts)}), got {args.train_steps!r}")
    steps = steps * len(counts) if len(steps) == 1 else steps
    out = Path(args.out)
    state_path, targets = out / "rounds.json", out / "targets"
    done = json.loads(state_path.read_text()) if state_path.is_file() else []
    encoder = done[-1]["encoder"] if done else args.checkpoint
    previous = done[-1]["renders"] if done else 0
    for r, (n, n_steps) in enumerate(zip(counts, steps), start=1):
        if r <= len(done):
            if done[r - 1]["renders"] != n:
                raise ValueError(f"{state_path}: round {r} had {done[r - 1]['renders']} renders, --rounds asks "
                                 f"for {n}; use the same --rounds or another --out")
            continue
        renders = round_renders(args, n, out / "renders" / f"round{r}")
        log.info("flywheel round %d: targets of renders %d-%d (%s)", r, previous, n,
                 f"teacher started from {encoder}" if encoder else "full teacher")
        generate_targets.main(_teacher_args(args, renders, targets, encoder))
        exp_dir = out / f"round{r}"
        status = train_encoder(_train_args(args, renders, targets, exp_dir, n_steps, encoder))
        if status:
            raise RuntimeError(f"{exp_dir}: r2s-train-encoder ended with status {status}")
        from render2style.datasets import build_render_source
        ids = sorted(build_render_source("renders", renders).ids)[previous:]
        encoder = str(exp_dir / "checkpoints" / "best_model.pt")
        done.append({"round": r, "renders": n, **round_summary(targets, ids), "encoder": encoder,
                     "train_steps": n_steps})
        atomic_write_json(done, state_path)
        atomic_write_text(rounds_table(done), out / "rounds.md")
        previous = n
    print(rounds_table(done))
    return done
