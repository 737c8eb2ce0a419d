"""The target-generation job: renders -> teacher -> a resumable, shardable target folder.

Layout (docs/ARCHITECTURE.md "Target folder"): ``run.json``, ``latents/<id>.npy`` (float32
``[n_latent, 512]``), ``images/<id>.png``, ``meta/<id>.json`` and ``metadata.csv``. An item is finished
iff its meta, latent and image agree (``is_finished``: the meta, written last and atomically, records the
latent's SHA-256 and the image's size), so a crash loses at most the item in progress and a rerun skips
finished items. Item k of the sorted ids belongs to shard k % n. Any number of processes may work on one
folder (same shard or not, kill -9 included): each item is computed under a per-item ``flock`` claim
(``claims/<id>.lock``), so no item is computed twice and no process deletes files another is writing.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from render2style.datasets.renders import check_render
from render2style.datasets.screening import screen_renders
from render2style.teacher import TeacherConfig, TeacherInput
from render2style.teacher.dual import run_dual_teacher
from render2style.teacher.encoder_init import run_encoder_init_batch
from render2style.teacher.priors import resolve_priors
from render2style.teacher.run import run_teacher_batch
from render2style.utils.claims import claim
from render2style.utils.io import (
    atomic_save_image,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    sweep_temp_files,
    temp_file_target,
)

log = logging.getLogger(__name__)

#: Renders per teacher run with the demo preset (r2s-generate-targets, the demo world's targets): on 2 CPU threads
#: the 64² generator's many small operations then carry 4 renders' seeds at once; measured 2.4× faster per target
#: than one render a run, and faster than 8 or 16 (docs/BENCHMARKS.md, issue 11).
DEMO_BATCH = 4

#: iBUG 68-point mirror permutation: landmark j of a flipped face is landmark FLIP_68[j] of the original.
FLIP_68 = (
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # eyebrows 17-21 <-> 22-26
    + [27, 28, 29, 30]                           # nose bridge
    + [35, 34, 33, 32, 31]                       # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes 36-41 <-> 42-47
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]           # inner lips
)

#: run.json fields that must agree for a folder to hold one consistent set of targets (``seed`` and
#: ``flip``: each render's random stream and the set of items depend on them), with their options.
COMPATIBILITY_KEYS = {"method": "--method", "generator": "--stylegan_weights", "size": "the generator",
                      "n_latent": "the generator", "style_dim": "the generator", "perceptual": "--no_perceptual",
                      "seed": "--seed", "flip": "--flip", "render_generator": "--render_generator",
                      "dual_search": "--dual_search"}

FLIP_SUFFIX = "_flip"


# --- shards ------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard: expected 'i/n' (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard: need 0 <= i < n, got {text!r}")
    return i, n


def resolve_shard(shard: tuple[int, int] | None = None, env: dict | None = None) -> tuple[int, int]:
    """The effective shard: ``shard`` (default 0/1), subdivided among torchrun ranks (``RANK``/``WORLD_SIZE``).

    Rank r of W running shard i/n takes shard ``i + n·r`` of ``n·W``: the ranks partition shard i exactly.
    """
    env = os.environ if env is None else env
    i, n = shard or (0, 1)
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return i + n * rank, n * world


def shard_ids(ids: Sequence[str], shard: tuple[int, int]) -> list[str]:
    """The ids of ``shard`` = (i, n): item k of the sorted ids belongs to shard k % n."""
    i, n = shard
    return [x for k, x in enumerate(sorted(ids)) if k % n == i]


# --- flipped renders ---------------------------------------------------------------------------
def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Mirror 68 iBUG landmarks (pixel coordinates) for an image of ``width`` flipped horizontally."""
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape != (68, 2):
        raise ValueError(f"flip_landmarks: expected [68, 2] iBUG landmarks, got shape {landmarks.shape}")
    mirrored = landmarks[FLIP_68].copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    return mirrored


def flip_render(render):
    """The horizontally flipped render (rgb, masks, landmarks mirrored)."""
    def fl(a):
        return None if a is None else np.ascontiguousarray(np.asarray(a)[:, ::-1])
    width = render.rgb.shape[1]
    landmarks = None if render.landmarks is None else flip_landmarks(render.landmarks, width)
    return dataclasses.replace(render, id=render.id + FLIP_SUFFIX, rgb=fl(render.rgb),
                               face_mask=fl(render.face_mask), hair_mask=fl(render.hair_mask),
                               landmarks=landmarks)


# --- folder ------------------------------------------------------------------------------------
CLAIMS = "claims"


def item_paths(out_dir: str | os.PathLike, item_id: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {"latent": out / "latents" / f"{item_id}.npy", "image": out / "images" / f"{item_id}.png",
            "meta": out / "meta" / f"{item_id}.json", "noise": out / "noise" / f"{item_id}.npz"}


def is_finished(out_dir: str | os.PathLike, item_id: str) -> bool:
    """True iff meta, latent and image (and the noise maps, for methods that fit them) are present and
    agree: the latent's (and noise file's) SHA-256 and the image's size are the ones the meta recorded."""
    paths = item_paths(out_dir, item_id)
    try:
        meta = json.loads(paths["meta"].read_text())
        return (isinstance(meta, dict) and paths["image"].stat().st_size == meta.get("image_bytes")
                and file_sha256(paths["latent"]) == meta.get("latent_sha256")
                and ("noise_sha256" not in meta or file_sha256(paths["noise"]) == meta["noise_sha256"]))
    except (OSError, ValueError):
        return False


def clear_item(out_dir: str | os.PathLike, item_id: str) -> None:
    """Delete an unfinished item's files (meta first, so it never looks finished) and its temp files.
    Only under the item's claim: the claim holder is the only writer of these names."""
    paths = item_paths(out_dir, item_id)
    for key in ("meta", "latent", "image", "noise"):
        paths[key].unlink(missing_ok=True)
        sweep_temp_files(paths[key].parent, {paths[key].name})


def claim_item(out_dir: str | os.PathLike, item_id: str):
    """``with claim_item(out, id) as mine:`` the cross-process claim of one item (``utils.claims``)."""
    return claim(Path(out_dir) / CLAIMS / f"{item_id}.lock")


def sweep_leftovers(out_dir: str | os.PathLike) -> int:
    """Delete temp files of interrupted writes whose item no live process claims; returns how many."""
    removed = 0
    for sub in ("latents", "images", "meta", "noise"):
        folder = Path(out_dir) / sub
        for f in sorted(folder.iterdir()) if folder.is_dir() else ():
            target = temp_file_target(f)
            if target is None:
                continue
            with claim_item(out_dir, Path(target).stem) as mine:
                if mine and f.exists():
                    f.unlink()
                    removed += 1
    return removed


def check_run_config(out_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write ``run.json``, or check that the existing one describes the same kind of targets."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        atomic_write_json(config, path)
        return
    with open(path) as f:
        old = json.load(f)
    diff = {k: (old.get(k), config.get(k)) for k in COMPATIBILITY_KEYS if old.get(k) != config.get(k)}
    if diff:
        detail = ", ".join(f"{k}: {a!r} there, {b!r} now ({COMPATIBILITY_KEYS[k]})" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: this target folder was started with a different configuration ({detail}); "
                         "resume it with the settings it was started with, or use another --out folder")
    changed = sorted(k for k in set(old.get("teacher", {})) | set(config.get("teacher", {}))
                     if old.get("teacher", {}).get(k) != config.get("teacher", {}).get(k))
    changed += sorted(k for k in set(old) | set(config) if k.startswith("init_") and old.get(k) != config.get(k))
    if changed:
        log.warning("%s: resuming with different teacher settings (%s); rows record their own run", path,
                    ", ".join(changed))


def rebuild_metadata(out_dir: str | os.PathLike) -> Path:
    """Rewrite ``metadata.csv`` from the finished items' ``meta/*.json`` (atomically, under a file lock so
    that concurrent shards cannot replace a complete table with an older, shorter one)."""
    out = Path(out_dir)
    with open(out / ".metadata.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep_temp_files(out, {"metadata.csv"})  # only lock holders write it
        rows = [json.loads(p.read_text()) for p in sorted((out / "meta").glob("*.json")) if is_finished(out, p.stem)]
        columns = ["id"] + sorted({k for r in rows for k in r} - {"id"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(buf.getvalue(), out / "metadata.csv")
    return out / "metadata.csv"


# --- one item ----------------------------------------------------------------------------------
def teacher_input(render, device: str | torch.device = "cpu") -> TeacherInput:
    """A ``Render`` (uint8 rgb, float masks, pixel landmarks) as the teacher's tensors on ``device``."""
    def mask(m):
        return None if m is None else torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None].to(device)
    image = torch.from_numpy(np.ascontiguousarray(render.rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1
    landmarks = None if render.landmarks is None else torch.as_tensor(np.asarray(render.landmarks, np.float32))
    return TeacherInput(image=image.to(device), face_mask=mask(render.face_mask), hair_mask=mask(render.hair_mask),
                        landmarks=landmarks)


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> RGB PIL image."""
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar metrics for a metadata row; nested dicts flattened (``seconds.total`` -> ``seconds_total``)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flat_metrics(v, f"{prefix}{k}_"))
            continue
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (bool, int, float, str)):
            out[prefix + k] = v
    return out


def write_target(out_dir: str | os.PathLike, item_id: str, w_plus: np.ndarray, image: Image.Image,
                 row: dict[str, Any], noise: list[np.ndarray] | None = None) -> None:
    """Write latent, image, the fitted noise maps when there are any (``noise/<id>.npz``: ``noise_i``
    ``[1, r, r]`` per layer, what the image was rendered with), then meta (the finished marker, with the
    files' SHA-256 and the image's size); remove the others if anything fails."""
    paths = item_paths(out_dir, item_id)
    try:
        atomic_save_npy(w_plus, paths["latent"])
        atomic_save_image(image, paths["image"])
        row = {**row, "latent_sha256": file_sha256(paths["latent"]), "image_bytes": paths["image"].stat().st_size}
        if noise is not None:
            atomic_save_npz({f"noise_{i}": n for i, n in enumerate(noise)}, paths["noise"])
            row["noise_sha256"] = file_sha256(paths["noise"])
        atomic_write_json(row, paths["meta"])
    except BaseException:
        if not paths["meta"].is_file():
            for key in ("latent", "image", "noise"):
                paths[key].unlink(missing_ok=True)
        raise


# --- the job -----------------------------------------------------------------------------------
def run_config(G, cfg: TeacherConfig, method: str, perceptual, generator_name: str, seed: int, flip: bool,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``run.json`` contents; ``demo`` is true with the demo generator or without perceptual terms."""
    use_perceptual = perceptual is not False
    return {"method": method, "generator": generator_name, "size": G.size, "n_latent": G.n_latent,
            "style_dim": G.style_dim, "perceptual": use_perceptual,
            "demo": generator_name.startswith("demo") or not use_perceptual, "seed": seed, "flip": flip,
            "teacher": cfg.as_dict(), **(extra or {})}


def _log_demo(config: dict[str, Any]) -> None:
    reasons = ([f"{config['generator']} generator (64², not photoreal)"] if config["generator"].startswith("demo")
               else []) + (
        [] if config["perceptual"] else ["perceptual terms OFF (LPIPS/VGG dropped by the demo option)"])
    if reasons:
        log.warning("DEMO targets: %s", "; ".join(reasons))


def _units(source, shard: tuple[int, int], flip: bool, limit: int | None) -> list[tuple[str, bool, str]]:
    """This shard's work units ``(render_id, flipped, item_id)``."""
    ids = sorted(source.ids)[:limit] if limit is not None else sorted(source.ids)
    return [(x, f, x + FLIP_SUFFIX if f else x) for x in shard_ids(ids, shard)
            for f in ((False, True) if flip else (False,))]


def _targets(G, items: Sequence[tuple], cfg: TeacherConfig, config: dict[str, Any], perceptual,
             shard: tuple[int, int], device, search_generator=None, encoder_init=None) -> list[tuple]:
    """Run the teacher on ``(render, cached render)`` pairs (the render possibly flipped): per pair (W+, teacher
    image, metadata row, fitted noise maps or None). Garbin et al.'s teacher, plain or encoder-initialised, takes
    them in one batch, the other teachers one after another. ``seconds``: the batch's time over its size."""
    t0 = time.perf_counter()
    inps = [teacher_input(render, device) for render, _ in items]
    streams = [dict(seed=config["seed"], render_id=cached.id, flip=render is not cached) for render, cached in items]
    if config["method"] == "dual":
        results = [run_dual_teacher(search_generator, G, inp, cfg, perceptual, search=config["dual_search"], **stream)
                   for inp, stream in zip(inps, streams)]
    elif encoder_init is not None:  # the flywheel: the teacher started from E(x)
        results = run_encoder_init_batch(G, encoder_init, inps, cfg, perceptual, seed=config["seed"],
                                         render_ids=[s["render_id"] for s in streams],
                                         flips=[s["flip"] for s in streams])
    else:
        results = run_teacher_batch(config["method"], G, inps, cfg, perceptual, seed=config["seed"],
                                    render_ids=[s["render_id"] for s in streams], flips=[s["flip"] for s in streams])
    seconds = round((time.perf_counter() - t0) / len(items), 3)
    return [_item(G, render, cached, result, config, shard, seconds)
            for (render, cached), result in zip(items, results)]


def _item(G, render, cached, result, config: dict[str, Any], shard: tuple[int, int], seconds: float
          ) -> tuple[np.ndarray, Image.Image, dict[str, Any], list[np.ndarray] | None]:
    """One teacher result as (W+, teacher image, metadata row, fitted noise maps or None)."""
    w_plus = result.w_plus.detach().float().cpu().numpy()
    if w_plus.shape != (G.n_latent, G.style_dim):
        raise RuntimeError(f"teacher returned W+ of shape {w_plus.shape}, expected ({G.n_latent}, {G.style_dim})")
    row = {**flat_metrics(result.metrics), "id": render.id, "render_id": cached.id, "flip": render is not cached,
           "render": str(cached.path), "method": config["method"], "generator": config["generator"],
           "demo": config["demo"], "perceptual": config["perceptual"], "base_seed": config["seed"],
           "seconds": seconds, "shard": f"{shard[0]}/{shard[1]}"}
    if config["method"] == "dual":  # both generators, by path and SHA-256 (None for the demo generator)
        weights = config.get("weights", {})
        row.update(render_generator=config["render_generator"], dual_search=config["dual_search"],
                   generator_sha256=weights.get("stylegan_weights", {}).get("sha256"),
                   render_generator_sha256=weights.get("render_generator", {}).get("sha256"))
    noise = [n.float().cpu().numpy() for n in result.noise] if result.noise is not None else None
    return w_plus.astype(np.float32), to_pil(result.image), row, noise


def generate_targets(source, out_dir: str | os.PathLike, G, cfg: TeacherConfig, method: str, perceptual,
                     shard: tuple[int, int] | None = None, flip: bool = False, progress: bool = True,
                     seed: int = 0, generator_name: str = "demo", device: str | torch.device = "cpu",
                     skip_corrupt: bool = False, limit: int | None = None,
                     extra_config: dict[str, Any] | None = None, search_generator=None,
                     encoder_init=None, batch: int = 1) -> dict[str, Any]:
    """Run the teacher on every unfinished render of this shard and write the target folder.

    ``source``: indexable renders with ``.ids`` (``render2style.datasets.build_render_source``).
    ``perceptual``: ``PerceptualNets`` or False (the explicit demo option: no LPIPS/VGG terms, recorded).
    ``shard``: ``(i, n)``; under torchrun each rank takes its part (see :func:`resolve_shard`).
    ``generator_name``: ``"demo"`` or the weights file, recorded. ``limit``: only the first ``limit``
    sorted ids. ``extra_config``: more fields for ``run.json``; for ``method="dual"`` it names
    ``render_generator`` and ``dual_search``, and ``search_generator`` is G_rendering (``G``: G_real, whose
    images are the targets). ``encoder_init``: a ``teacher.encoder_init.EncoderInit`` (method "garbin"):
    every target starts from the encoder's E(x). ``batch``: renders per teacher run (Garbin et al.'s teacher,
    plain or encoder-initialised: one batched search, each render as it would be alone; seconds per target
    are the batch's over its size). Returns counts and timing.
    """
    if (method == "dual") != (search_generator is not None):
        raise ValueError("method 'dual' needs search_generator (G_rendering), and only it takes one")
    if batch < 1:
        raise ValueError(f"generate_targets: batch must be >= 1 renders per teacher run, got {batch}")
    if encoder_init is not None and method != "garbin":
        raise ValueError(f"encoder_init starts Garbin et al.'s teacher; method {method!r} takes none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard = resolve_shard(shard)
    config = run_config(G, cfg, method, perceptual, generator_name, seed, flip, extra_config)
    check_run_config(out, config)
    _log_demo(config)
    swept = sweep_leftovers(out)
    if swept:
        log.info("removed %d temp file(s) of interrupted writes", swept)
    units = _units(source, shard, flip, limit)
    todo = [u for u in units if not is_finished(out, u[2])]
    stats = {"shard": list(shard), "total": len(units), "already_done": len(units) - len(todo), "done": 0,
             "claimed_elsewhere": 0}
    log.info("shard %d/%d: %d items, %d already finished, %d to do (%s, out %s)", shard[0], shard[1],
             len(units), stats["already_done"], len(todo), method, out)

    usable = set(screen_renders(source, sorted({u[0] for u in todo}), skip_corrupt))  # before any compute
    corrupt = {u[0] for u in todo} - usable
    t_job = time.perf_counter()
    if todo:
        searched = G if search_generator is None else search_generator
        cfg = resolve_priors(searched, cfg, device, seed)  # centroids etc. once, not per item
    index = {x: k for k, x in enumerate(source.ids)}
    cached = None
    units = [u for u in todo if u[0] not in corrupt]
    with tqdm(total=len(units), desc=f"targets {shard[0]}/{shard[1]}", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for k in range(0, len(units), batch):
            with contextlib.ExitStack() as claims:
                items = []
                for render_id, flipped, item_id in units[k:k + batch]:
                    if not claims.enter_context(claim_item(out, item_id)) or is_finished(out, item_id):
                        stats["claimed_elsewhere"] += 1  # another process has it, or has just finished it
                        continue
                    clear_item(out, item_id)  # leftovers of a process that died holding this item
                    if cached is None or cached.id != render_id:
                        cached = source[index[render_id]]
                        check_render(cached)
                    items.append((item_id, flip_render(cached) if flipped else cached, cached))
                if items:
                    made = _targets(G, [(render, c) for _, render, c in items], cfg, config, perceptual, shard,
                                    device, search_generator, encoder_init)
                    for (item_id, _, _), target in zip(items, made):
                        write_target(out, item_id, *target)
                stats["done"] += len(items)
            bar.update(len(units[k:k + batch]))
    stats.update(skipped_corrupt=len(corrupt), seconds=round(time.perf_counter() - t_job, 3))
    rebuild_metadata(out)
    log.info("shard %d/%d finished: %d new targets, %d skipped (corrupt), %d taken by other processes, in %.1f s",
             shard[0], shard[1], stats["done"], stats["skipped_corrupt"], stats["claimed_elsewhere"],
             stats["seconds"])
    return stats
