"""Flicker of encoded video with and without W+ smoothing, and the lag the smoothing costs.

    r2s-benchmark-video --checkpoint experiments/demo/checkpoints/best_model.pt      # scripts/run_demo.sh's encoder
    r2s-benchmark-video --checkpoint CKPT --frames 96 --smooth ema:0.5 --markdown docs/BENCHMARKS.md

The sequence: one demo render (``datasets.demo_renders``) whose yaw, pitch and light direction change
smoothly (sinusoids over the clip), drawn frame by frame as RGBA renders with hair masks, optionally with
per-frame pixel noise (``--jitter``: a noisy renderer). The tool encodes it once (``r2s-encode --sequence``);
every ``--smooth`` setting then runs what the tool runs for it (its ``CodeSmoother`` on the codes, at frame
times t / fps, then the generator) and is reported with:

- flicker: mean frame-to-frame change of the outputs over that of the inputs (the tool's ``FlickerMeter``);
- lag (frames): the shift maximising the correlation between the setting's trajectory and the unsmoothed
  one, sub-frame by a parabola through the peak, for two trajectories: the output images' projection on the
  first principal component of the unsmoothed outputs (the dominant image motion, a landmark stand-in that
  works for any generator) and the W+ codes' projection on theirs; for ``ema:A`` the lag of a steady ramp,
  (1 − A)/A frames, is given for reference;
- error: RMS difference of the image trajectory from the unsmoothed one, relative to its spread.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from render2style.cli import add_tool_info

log = logging.getLogger("render2style.benchmark_video")

DEFAULT_SMOOTH = ("none", "ema:0.6", "ema:0.3", "oneeuro:1.0,0", "oneeuro:0.3,20", "oneeuro:0.1,50")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_tool_info(p, "r2s-benchmark-video", "render2style.scripts.benchmark_video", [
        "r2s-benchmark-video --checkpoint experiments/demo/checkpoints/best_model.pt",
        "r2s-benchmark-video --checkpoint CKPT --jitter 4 --markdown docs/BENCHMARKS.md"])
    from render2style.options.encode_options import smooth_spec
    from render2style.options.validators import float_at_least, int_at_least
    p.add_argument("--checkpoint", required=True, help="pSp-layout checkpoint (e.g. the demo's best_model.pt)")
    p.add_argument("--frames", type=int_at_least(8), default=72, help="frames of the sequence")
    p.add_argument("--fps", type=float_at_least(0, strict=True), default=24.0, help="its frame rate")
    p.add_argument("--cycles", type=float_at_least(0, strict=True), default=1.5,
                   help="pose / light oscillations over the clip")
    p.add_argument("--size", type=int_at_least(16), default=128, help="render size in pixels")
    p.add_argument("--jitter", type=float_at_least(0), default=0.0,
                   help="per-frame Gaussian pixel noise (sigma in 0..255 units): a noisy renderer")
    p.add_argument("--seed", type=int, default=0, help="which demo face")
    p.add_argument("--smooth", action="append", type=smooth_spec, default=None,
                   help=f"a setting to measure (repeat; 'none' is always measured first); default: {DEFAULT_SMOOTH}")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--work_dir", default=None, help="where the sequence and the encodings go (default: a temp dir)")
    p.add_argument("--markdown", default=None, help="append the table to this Markdown file")
    args = p.parse_args(argv)
    specs = args.smooth if args.smooth is not None else [smooth_spec(s) for s in DEFAULT_SMOOTH]
    args.smooth = [None] + [s for s in specs if s is not None]
    return args


def sequence_params(frames: int, cycles: float, seed: int) -> list:
    """One demo face's parameters per frame: yaw ±20°, pitch ±8° (half the rate) and the light sweeping
    left to right, all smooth functions of time."""
    from render2style.datasets.demo_renders import sample_params

    base = sample_params(np.random.default_rng([seed, 0]))
    out = []
    for t in range(frames):
        phase = 2 * math.pi * cycles * t / frames
        light = np.array([0.7 * math.sin(phase), 0.3 + 0.2 * math.cos(0.5 * phase), 1.0])
        out.append(dataclasses.replace(base, yaw=20 * math.sin(phase), pitch=8 * math.sin(0.5 * phase + 1.0),
                                       roll=0.0, light=light / np.linalg.norm(light)))
    return out


def write_sequence(folder: Path, params: list, size: int, jitter: float, seed: int) -> None:
    """``frame_NNNN.png`` (RGBA, alpha = face mask) and ``frame_NNNN_hair.png`` per frame."""
    from PIL import Image

    from render2style.datasets.demo_renders import render_face

    rng = np.random.default_rng([seed, 1])
    folder.mkdir(parents=True, exist_ok=True)
    for t, p in enumerate(params):
        rgb, face, hair = render_face(p, size)
        if jitter > 0:
            rgb = np.clip(rgb + jitter * rng.standard_normal(rgb.shape), 0, 255).round().astype(np.uint8)
        alpha, hair = (np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8) for m in (face, hair))
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / f"frame_{t:04d}.png")
        Image.fromarray(hair, "L").save(folder / f"frame_{t:04d}_hair.png")


def lag_frames(reference: np.ndarray, delayed: np.ndarray, max_lag: int = 10) -> float:
    """The delay (frames, > 0: ``delayed`` comes later) maximising the correlation of two trajectories [T],
    refined to a sub-frame value by a parabola through the best integer lag and its neighbours."""
    reference, delayed = np.asarray(reference, np.float64), np.asarray(delayed, np.float64)
    n = len(reference)
    max_lag = min(max_lag, n // 3)
    lags = np.arange(-max_lag, max_lag + 1)

    def corr(k: int) -> float:
        a, b = (reference[:n - k], delayed[k:]) if k >= 0 else (reference[-k:], delayed[:n + k])
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-12))
    scores = np.array([corr(int(k)) for k in lags])
    i = int(scores.argmax())
    if 0 < i < len(lags) - 1:
        left, mid, right = scores[i - 1:i + 2]
        denom = left - 2 * mid + right
        return float(lags[i] + (0.5 * (left - right) / denom if denom < 0 else 0.0))
    return float(lags[i])


def first_component(x: np.ndarray) -> np.ndarray:
    """Unit first principal direction of the rows of ``x`` [T, N]."""
    centred = x - x.mean(0)
    return np.linalg.svd(centred, full_matrices=False)[2][0]


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    """Encode the sequence once with ``r2s-encode --sequence``, then smooth its codes with each setting (the
    tool's ``CodeSmoother``, frame times t / fps) and decode them: E(x) -> smoothing -> G, as the tool does."""
    import torch

    from render2style import encode
    from render2style.encoders.psp import pSp
    from render2style.inference.engine import InferenceModel, pick_device
    from render2style.inference.inputs import make_loader
    from render2style.inference.smoothing import CodeSmoother
    from render2style.inference.video import FlickerMeter
    from render2style.options.encode_options import EncodeOptions

    seq, out = work / "sequence", work / "encoded"
    write_sequence(seq, sequence_params(args.frames, args.cycles, args.seed), args.size, args.jitter, args.seed)
    argv = ["--checkpoint", args.checkpoint, "--input", str(seq), "--out", str(out), "--sequence",
            "--fps", str(args.fps), "--workers", "0", "--save_images", "false"] + \
        (["--device", args.device] if args.device else [])
    device = pick_device(args.device)
    net = pSp.from_checkpoint(args.checkpoint, device=device)
    if encode.run(EncodeOptions().parse(argv), net) != 0:
        raise RuntimeError(f"r2s-encode failed on {seq} (see {out / 'summary.json'})")
    tool_flicker = encode_summary(out)["video"]["flicker"]["flicker"]
    loader, _ = make_loader(str(seq), int(net.opts.resolution or 256), int(net.opts.input_nc), 16, workers=0)
    inputs = torch.cat([b.images for b in loader])
    names = [f"frame_{t:04d}" for t in range(args.frames)]
    codes = torch.stack([torch.from_numpy(np.load(out / "latents" / f"{n}.npy")) for n in names])
    times = [t / args.fps for t in range(args.frames)]
    model = InferenceModel(net, device)

    rows, ref = [], None
    for spec in args.smooth:
        smoothed = CodeSmoother(spec)(codes, times) if spec is not None else codes
        images = torch.cat([model.decode(c) for c in smoothed.split(16)]).cpu()
        meter = FlickerMeter()
        meter.update(inputs, images)
        flicker = meter.result()
        flat_img, flat_code = images.flatten(1).double().numpy(), smoothed.flatten(1).double().numpy()
        if ref is None:
            ref = {"img": flat_img, "code": flat_code, "pc_img": first_component(flat_img),
                   "pc_code": first_component(flat_code)}
            log.info("flicker without smoothing %.4f (r2s-encode's summary: %.4f)", flicker["flicker"], tool_flicker)
        img_traj, ref_img = flat_img @ ref["pc_img"], ref["img"] @ ref["pc_img"]
        code_traj, ref_code = flat_code @ ref["pc_code"], ref["code"] @ ref["pc_code"]
        name = str(spec) if spec is not None else "none"
        rows.append({
            "smooth": name, **flicker,
            "lag_image": lag_frames(ref_img, img_traj), "lag_code": lag_frames(ref_code, code_traj),
            "ramp_lag": (1 - spec.alpha) / spec.alpha if spec is not None and spec.kind == "ema" else None,
            "error_image": float(np.sqrt(np.mean((img_traj - ref_img) ** 2)) / (ref_img.std() + 1e-12)),
        })
        log.info("%s: flicker %.3f, lag %.2f frames (image) / %.2f (code)", name, rows[-1]["flicker"],
                 rows[-1]["lag_image"], rows[-1]["lag_code"])
    return rows


def encode_summary(out: Path) -> dict:
    import json

    return json.loads((out / "summary.json").read_text())


def to_markdown(args: argparse.Namespace, rows: list[dict], device: str) -> str:
    none = rows[0]["flicker"]
    lines = [f"Sequence: {args.frames} frames at {args.fps:g} fps, demo face seed {args.seed} at {args.size}², "
             f"{args.cycles:g} pose/light cycles, pixel noise σ = {args.jitter:g}; checkpoint `{args.checkpoint}`; "
             f"{device}.", "",
             "| smoothing | flicker | vs none | lag, image PC-1 (frames) | lag, W+ PC-1 (frames) | ramp lag, theory "
             "| trajectory error (× spread) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        theory = f"{r['ramp_lag']:.2f}" if r["ramp_lag"] is not None else "—"
        lines.append(f"| {r['smooth']} | {r['flicker']:.3f} | {r['flicker'] / none:.2f} | {r['lag_image']:.2f} | "
                     f"{r['lag_code']:.2f} | {theory} | {r['error_image']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    import torch

    from render2style.scripts.benchmark import append_markdown

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="r2s_video_") as tmp:
        rows = measure(args, Path(args.work_dir) if args.work_dir else Path(tmp))
    table = to_markdown(args, rows, device)
    print(table)
    if args.markdown:
        append_markdown(args.markdown, table)
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
