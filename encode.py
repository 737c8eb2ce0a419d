"""Encode renders into W+ codes and photoreal faces with a trained pSp-layout encoder.

    r2s-encode --checkpoint CKPT --input renders/ --out results/ [--dtype bf16 --compile]
    r2s-encode ... --n_variants 4 --latent_mask 8-17 --mix_alpha 0.5 --truncation 0.7 --seed 1   # 18 layers
    r2s-encode ... --interpolate --interp_steps 16 --interp_video mp4
    r2s-encode ... --paste_back --transforms aligned/transforms
    r2s-encode ... --refine_steps 50 --lpips_weights vgg16-397923af.pth     # teacher projector steps from E(x)
    r2s-encode ... --input clip.mp4 --smooth oneeuro:0.3,20                # or frames/ --sequence --fps 30

Outputs in --out: images/<name>.png (generated faces), latents/<name>.npy (W+ [n_latent, 512]) or
latents/codes_XXXXX.{npy,json} with --codes_per_batch, grids/, variants/<name>_vK.png and .npy (its W+),
interpolation/, paste_back/, video/<name>.mp4 (a video or --sequence: the input's timing) and summary.json
(timings, failed inputs, DEMO flag, mixing settings, refinement losses before/after, video flicker).

Per batch: E(x) -> [K refinement steps] -> [temporal smoothing] -> G(w).
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from render2style.options.encode_options import EncodeOptions

if TYPE_CHECKING:  # torch and the model load after the options are parsed (a fast --help)
    import torch

    from render2style.encoders.psp import pSp
    from render2style.inference.engine import InferenceModel

log = logging.getLogger("render2style.encode")


def _paste_batch(images: torch.Tensor, names: Sequence[str], transforms: Path, out: Path, blend: str) -> None:
    """Composite each generated face into the original image its alignment transform names, inside the
    original's face mask when it has one (``datasets.masks``: a render's mask file, segmentation or alpha)."""
    from PIL import Image

    from render2style.alignment.ffhq import AlignTransform
    from render2style.alignment.paste import paste_back
    from render2style.inference.inputs import read_image
    from render2style.inference.outputs import to_uint8
    from render2style.utils.io import atomic_save_image

    for face, name in zip(to_uint8(images), names):
        tpath = transforms / f"{name}.json"
        if not tpath.is_file():
            log.warning("paste-back: no transform %s for %s; skipped", tpath, name)
            continue
        t = AlignTransform.load(tpath)
        rgb, face_mask = read_image(Path(t.source))
        atomic_save_image(Image.fromarray(paste_back(rgb, face, t, face_mask=face_mask, blend=blend)),
                          out / f"{name}.png")


def _write_interpolation(model: InferenceModel, pair: list[tuple[str, torch.Tensor]], opts, out: Path,
                         layers: list[int] | None) -> None:
    """Morph frames (and an optional mp4/gif) from the first input's code to the second's (only ``layers``
    move; None: all)."""
    import torch

    from render2style.inference.latent_ops import interpolate
    from render2style.inference.outputs import save_sequence, to_uint8

    if len(pair) < 2:
        log.error("--interpolate needs at least two readable inputs; got %d", len(pair))
        return
    frames = interpolate(pair[0][1], pair[1][1], opts.interp_steps, per_layer=layers)
    images = torch.cat([model.decode(chunk, opts.resize_outputs) for chunk in frames.split(opts.batch_size)])
    folder = out / "interpolation" / f"{pair[0][0]}_to_{pair[1][0]}".replace("/", "_")
    save_sequence(to_uint8(images), folder, opts.interp_video, opts.fps)
    log.info("interpolation: %d frames in %s", opts.interp_steps, folder)


def _make_refiner(opts, net: pSp, device: torch.device):
    """The refiner of ``--refine_steps`` (None for 0) and the loader's target function."""
    if not opts.refine_steps:
        return None, None
    import functools

    from render2style.inference.refine import Refiner, refine_target
    from render2style.teacher.losses import PerceptualNets

    nets = None
    if opts.no_perceptual:
        log.warning("DEMO option --no_perceptual: the refinement loss has no LPIPS term (YUV L1 only)")
    else:
        nets = PerceptualNets.load(opts.lpips_weights, lpips_net="vgg", need_vgg=False, device=device)
    refiner = Refiner(net.decoder, opts.refine_steps, nets, seed=opts.seed, amp=opts.dtype != "fp32",
                      schedule=opts.refine_schedule, lr=opts.refine_lr)
    target = functools.partial(refine_target, size=net.decoder.size, include_hair=refiner.cfg.include_hair,
                               falloff_power=refiner.cfg.falloff_power)
    return refiner, target


def _stats(values: list[float]) -> dict | None:
    import numpy as np

    return {"mean": float(np.mean(values)), "median": float(np.median(values))} if values else None


def run(opts, net: pSp | None = None) -> int:
    """Encode everything ``opts.input`` names (``opts`` from :class:`EncodeOptions`); returns 0 when every
    input was encoded, 1 when any failed (``--on_error fail`` stops at the first, ``skip`` encodes the rest)
    or when nothing was encoded. ``net``: an already loaded model instead of ``opts.checkpoint``."""
    import numpy as np

    from render2style.encoders.psp import pSp
    from render2style.inference.engine import InferenceModel, pad_batch, pick_device, synchronize
    from render2style.inference.inputs import is_video, make_loader
    from render2style.inference.mixing import mix_styles, parse_latent_mask
    from render2style.inference.outputs import (
        save_batch_codes,
        save_codes,
        save_images,
        side_by_side,
        to_uint8,
        write_summary,
    )

    device = pick_device(opts.device)
    net = pSp.from_checkpoint(opts.checkpoint, device=device) if net is None else net
    model = InferenceModel(net, device, opts.dtype, opts.compile)
    demo = net.opts.demo_generator
    if demo:
        log.warning("DEMO checkpoint %s: its generator is the %s demo generator (64², %s); the images show the "
                    "mechanics, not photorealism", opts.checkpoint, demo,
                    "trained on UTKFace" if demo == "faces" else "random weights")
    size = int(getattr(net.opts, "resolution", None) or 256)
    input_nc = int(net.opts.input_nc)
    mask = parse_latent_mask(opts.latent_mask, model.n_latent)  # checked against the model before any work
    interp_layers = parse_latent_mask(opts.interp_layers, model.n_latent, "--interp_layers") \
        if opts.interp_layers else None
    log.info("model %s: encoder input %dx%dx%d, generator %d² (n_latent %d), device %s, %s%s",
             opts.checkpoint, input_nc, size, size, net.decoder.size, model.n_latent, device, opts.dtype,
             ", compiled" if opts.compile else "")
    refiner, target = _make_refiner(opts, net, device)
    loader, count = make_loader(opts.input, size, input_nc, opts.batch_size, opts.workers,
                                pin_memory=device.type == "cuda", exclude=opts.exclude,
                                video_every=opts.video_every, max_frames=opts.max_frames, frame_rate=opts.fps,
                                target=target)
    out = Path(opts.out)
    for sub in ["images", "latents"] + (["grids"] if opts.save_grid else []) + \
               (["variants"] if opts.n_variants else []) + (["paste_back"] if opts.paste_back else []):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sequence = _Sequence(opts, loader.dataset, out) if opts.sequence or is_video(opts.input) else None

    failed: list[dict] = []
    pair: list[tuple[str, torch.Tensor]] = []
    n_done, model_s, batch_times, batch_sizes = 0, 0.0, [], []
    refine_s, before, after, refined_names = 0.0, [], [], []
    wall0 = time.perf_counter()
    stopped = False
    try:
        for index, batch in enumerate(loader):
            for name, message in batch.errors:
                failed.append({"name": name, "error": message})
                log.error("input %s: %s", name, message)
            if batch.errors and opts.on_error == "fail":
                log.error("stopping (--on_error fail)")
                stopped = True
                break
            if batch.images is None:
                continue
            n = len(batch.names)
            x = pad_batch(batch.images, opts.batch_size) if opts.compile else batch.images  # one shape: no recompile
            synchronize(device)
            t0 = time.perf_counter()
            codes = model.encode(x)[:n]
            note = ""
            if refiner is not None:
                r0 = time.perf_counter()
                refined = refiner(codes, batch.targets, batch.loss_masks, batch.names)
                synchronize(device)
                refine_s += time.perf_counter() - r0
                codes = refined.codes
                before += refined.before.tolist()
                after += refined.after.tolist()
                refined_names += batch.names
                note = f"; refined: loss {refined.before.mean():.4f} -> {refined.after.mean():.4f}"
            if sequence is not None:
                codes = sequence.smooth(codes, batch.times)
            padded = pad_batch(codes, opts.batch_size) if opts.compile else codes
            images = model.decode(padded, opts.resize_outputs)[:n]
            variants = mixed = None
            if opts.n_variants:
                mixed = mix_styles(padded, net.decoder, opts.n_variants, mask, opts.mix_alpha, opts.truncation,
                                   opts.seed, mean_latent=net.latent_avg)
                variants = model.decode(mixed.flatten(0, 1), opts.resize_outputs).unflatten(0, mixed.shape[:2])[:n]
                mixed = mixed[:n]
            synchronize(device)
            dt = time.perf_counter() - t0
            model_s += dt
            batch_times.append(dt)
            batch_sizes.append(n)
            n_done += n
            log.info("batch %d: %d images in %.1f ms (%.1f ms/image, %.1f img/s)%s%s", index, n, dt * 1e3,
                     dt * 1e3 / n, n / dt, f" [{n_done}/{count}]" if count else "", note)

            if opts.save_images:
                save_images(images, batch.names, out / "images")
            if opts.codes_per_batch:
                save_batch_codes(codes, batch.names, out / "latents", index)
            else:
                save_codes(codes, batch.names, out / "latents")
            if variants is not None:
                for k in range(opts.n_variants):
                    save_images(variants[:, k], batch.names, out / "variants", suffix=f"_v{k}")
                    save_codes(mixed[:, k], batch.names, out / "variants", suffix=f"_v{k}")
            if opts.save_grid:
                cols = [batch.images.to(images.device), images] + \
                    (list(variants.unbind(1)) if variants is not None else [])
                save_images(side_by_side(cols, size=images.shape[-1]), batch.names, out / "grids")
            if opts.paste_back:
                _paste_batch(images, batch.names, Path(opts.transforms), out / "paste_back", opts.blend)
            if opts.interpolate and len(pair) < 2:
                pair += [(name, code) for name, code in zip(batch.names, codes)][: 2 - len(pair)]
            if sequence is not None:
                sequence.write(batch.images, images, to_uint8(images), batch.times)
    except BaseException:
        if sequence is not None:
            sequence.close(complete=False)     # no truncated video (the frames' images and codes are kept)
        raise
    video = sequence.close(complete=not stopped) if sequence is not None else None
    if stopped:
        return 1

    wall = time.perf_counter() - wall0
    if opts.interpolate:
        _write_interpolation(model, pair, opts, out, interp_layers)
    summary = {
        "checkpoint": str(opts.checkpoint), "input": str(opts.input), "device": str(device), "dtype": opts.dtype,
        "compile": bool(opts.compile), "images": n_done, "failed": failed, "batch_size": opts.batch_size,
        "model_seconds": model_s, "wall_seconds": wall,
        "throughput_img_s": n_done / model_s if model_s else None,
        "median_batch_ms": float(np.median(batch_times) * 1e3) if batch_times else None,
        # the batches after the first: no warm-up or compilation (r2s-evaluate's encoder speed)
        "steady_seconds_per_image": sum(batch_times[1:]) / sum(batch_sizes[1:]) if len(batch_times) > 1 else None,
        "demo": bool(demo), "demo_generator": demo, "n_variants": opts.n_variants,
        "mixing": {"latent_mask": mask, "mix_alpha": 1.0 if opts.mix_alpha is None else opts.mix_alpha,
                   "truncation": opts.truncation, "seed": opts.seed} if opts.n_variants else None,
        "refine": {"steps": opts.refine_steps, "schedule": opts.refine_schedule,
                   "lr": refiner.settings.lr, "perceptual": not opts.no_perceptual,
                   "loss_before": _stats(before), "loss_after": _stats(after),
                   "improved": sum(a < b for a, b in zip(after, before)), "seconds": refine_s,
                   "seconds_per_image": refine_s / n_done if n_done else None,
                   "per_image": {k: {"before": b, "after": a} for k, b, a in zip(refined_names, before, after)}}
        if refiner is not None else None,
        "video": video,
    }
    write_summary(summary, out)
    log.info("%d images encoded, %d failed; model %.2f s (%.1f img/s, first batch includes warm-up), wall %.2f s",
             n_done, len(failed), model_s, summary["throughput_img_s"] or 0.0, wall)
    if refiner is not None and before:
        r = summary["refine"]
        log.info("refinement (%d steps): eq. 1 loss mean %.4f -> %.4f (median %.4f -> %.4f), lower for %d of %d; "
                 "%.3f s per image", opts.refine_steps, r["loss_before"]["mean"], r["loss_after"]["mean"],
                 r["loss_before"]["median"], r["loss_after"]["median"], r["improved"], len(before),
                 r["seconds_per_image"])
    if video is not None:
        flick = video["flicker"]
        log.info("video %s: %d frames at %.3f fps, smoothing %s; flicker %s (mean frame-to-frame change: outputs "
                 "%s, inputs %s)", video["path"], video["frames"], video["fps"], video["smooth"] or "none",
                 _fmt(flick["flicker"]), _fmt(flick["output_change"]), _fmt(flick["input_change"]))
    if failed or not n_done:
        log.error("%s: %d of %d inputs failed (listed in %s)", opts.input, len(failed), n_done + len(failed),
                  out / "summary.json")
        return 1
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class _Sequence:
    """The frames of a video or ``--sequence``: optional W+ smoothing, the output video and the flicker figure."""

    def __init__(self, opts, dataset, out: Path):
        from fractions import Fraction

        from render2style.inference.smoothing import CodeSmoother
        from render2style.inference.video import FlickerMeter, VideoWriter

        info = getattr(dataset, "info", None)       # a video's own rate and time base; a sequence: --fps
        self.fps = info.fps if info is not None else Fraction(opts.fps).limit_denominator(1_000_000)
        stem = Path(opts.input).stem if info is not None else (_sequence_name(opts.input) or "sequence")
        self.path = out / "video" / f"{stem}.mp4"
        self.spec = opts.smooth
        self.smoother = CodeSmoother(opts.smooth) if opts.smooth is not None else None
        self.flicker = FlickerMeter()
        self.writer = VideoWriter(self.path, self.fps, info.time_base if info is not None else None)

    def smooth(self, codes: torch.Tensor, times: list[float]) -> torch.Tensor:
        return codes if self.smoother is None else self.smoother(codes, times).to(codes.dtype)

    def write(self, inputs: torch.Tensor, outputs: torch.Tensor, frames, times: list[float]) -> None:
        self.flicker.update(inputs, outputs)
        self.writer.write(frames, times)

    def close(self, complete: bool) -> dict:
        """Finish (or drop) the video; its summary entry."""
        self.writer.close(complete)
        return {"path": str(self.path) if complete and self.writer.frames else None, "frames": self.writer.frames,
                "fps": float(self.fps), "smooth": str(self.spec) if self.spec is not None else None,
                "flicker": self.flicker.result()}


def _sequence_name(spec: str) -> str:
    """A sequence's name: its folder's name, or the glob's fixed folder's."""
    from render2style.inference.inputs import input_root

    return input_root(spec).resolve().name


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = EncodeOptions().parse(argv)
    return run(opts)


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
