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
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from render2style.cli import add_tool_info
from render2style.teacher import METHODS, PerceptualNets, TeacherConfig, resolve_priors, run_teacher
from render2style.teacher.closed_loop import closed_loop_cases
from render2style.teacher.common import seed_generators, stream_key, synthesize
from render2style.teacher.run import build_problem, frozen
from render2style.teacher.sampling import sampling_step
from render2style.teacher.select import score_candidates
from render2style.utils.io import atomic_write_text

log = logging.getLogger(__name__)

STEPS = ("start", "sampling", "csanns", "projector", "interpolation", "selection")
FIELDS = ("source", "target", "method", "step", "loss", "ssim", "w_err", "landm_err", "seconds")


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
    p.add_argument("--no_landmarks", action="store_true", help="skip the dlib landmark error")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the teacher runs")
    p.add_argument("--seed", type=int, default=0, help="base seed of the teacher and of the closed-loop targets")
    p.add_argument("--out_csv", help="write every row here")
    p.add_argument("--out_md", help="write the Markdown table here")
    return p


class LandmarkError:
    """Mean distance of the 68 dlib landmarks between two images in % of the image width (None when dlib
    finds no face in either one), both images upsampled to 256² for detection."""

    def __init__(self):
        from render2style.alignment.landmarks import DlibLandmarks
        self.dlib = DlibLandmarks()
        self.found = self.tried = 0

    def _points(self, image: torch.Tensor) -> np.ndarray | None:
        x = torch.nn.functional.interpolate(image[None].float(), size=256, mode="bilinear", align_corners=False)
        rgb = ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        faces = self.dlib(rgb)
        return faces[0] if faces else None

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> float | None:
        self.tried += 1
        pa, pb = self._points(a), self._points(b)
        if pa is None or pb is None:
            return None
        self.found += 1
        return float(np.linalg.norm(pa - pb, axis=1).mean() / 256 * 100)


def measure(G, prob, codes: torch.Tensor, cfg: TeacherConfig, render: torch.Tensor, landmarks, w_true,
            noise=None) -> list[dict]:
    """Eq. 1 (no landmarks), SSIM inside Ia and the W+ / landmark errors of W+ codes ``[M, L, D]``."""
    ssims, losses = score_candidates(G, codes, prob.render, prob.render_mask, prob.loss, cfg.select_size,
                                     cfg.chunk, cfg.amp, noise=noise)
    rows = []
    for i, (s, loss) in enumerate(zip(ssims.tolist(), losses.tolist())):
        row = {"loss": loss, "ssim": s, "w_err": None, "landm_err": None}
        if w_true is not None:
            row["w_err"] = float((codes[i].cpu() - w_true).norm(dim=-1).mean() / cfg.w_std)
        if landmarks is not None:
            with torch.no_grad():
                image = synthesize(G, codes[i:i + 1], cfg.amp,
                                   noise=[n[:1] for n in noise] if noise else None)[0].clamp(-1, 1).cpu()
            row["landm_err"] = landmarks(image, render[0].cpu())
        rows.append(row)
    return rows


def benchmark_target(G, inp, cfg: TeacherConfig, perceptual, methods: Sequence[str], target_id: str, source: str,
                     w_true, landmarks, seed: int, agreement: dict) -> list[dict]:
    """Every row of one target: start, Garbin steps, selection, baselines; the landmark top-k agreement of
    step 1 is added to ``agreement`` (k -> list of bools)."""
    device = next(G.parameters()).device
    base = {"source": source, "target": target_id}
    nets = perceptual if perceptual is not False else None
    with frozen(G):
        prob = build_problem(G, inp, cfg, nets, device)
        w_avg = cfg.w_avg.to(device).reshape(1, 1, -1).expand(1, G.n_latent, -1)
        for k, same in topk_agreement(G, prob, cfg, stream_key(target_id), seed).items():
            agreement.setdefault(k, []).extend(same)
        out = [{**base, "method": "start", "step": "start", "seconds": 0.0,
                **measure(G, prob, w_avg, cfg, inp.image, landmarks, w_true)[0]}]
        for method in methods:
            res = run_teacher(method, G, inp, cfg, perceptual, seed=seed, render_id=target_id)
            seconds = res.metrics["seconds"]
            if method != "garbin":
                code = res.w_plus[None].to(device)
                noise = [n[None].to(device) for n in res.noise] if res.noise else None
                out.append({**base, "method": method, "step": "baseline", "seconds": seconds["total"],
                            **measure(G, prob, code, cfg, inp.image, landmarks, w_true, noise)[0]})
                continue
            elapsed = 0.0
            for step in ("sampling", "csanns", "projector", "interpolation"):
                elapsed += seconds.get(step, 0.0)
                cands = [c for c in res.candidates if c["step"] == step or
                         (step == "interpolation" and c["step"].startswith("interp_"))]
                best = min(cands, key=lambda c: c["loss"])
                out.append({**base, "method": method, "step": step, "seconds": elapsed,
                            **measure(G, prob, best["w_plus"][None].to(device), cfg, inp.image, landmarks,
                                      w_true)[0]})
            out.append({**base, "method": method, "step": "selection", "seconds": seconds["total"],
                        **measure(G, prob, res.w_plus[None].to(device), cfg, inp.image, landmarks, w_true)[0]})
    return out


TOP_K = (1, 4, 8, 16, 32)


def topk_agreement(G, prob, cfg: TeacherConfig, key, seed: int) -> dict[int, list[bool]]:
    """Per k of :data:`TOP_K`: for each seed, does step 1 with the dlib term on the k best samples pick the
    same sample as ranking all of them by the full eq. 1?"""
    if prob.loss.landmarks is None:
        return {}
    full = cfg.replace(landmark_top_k=cfg.n_samples)
    gens = seed_generators(seed, cfg.n_seeds, key=key, device=prob.target.device)
    states = [g.get_state() for g in gens]

    def pick(c):
        for g, st in zip(gens, states):
            g.set_state(st)
        return sampling_step(G, prob.loss, c, gens)[0]
    reference = pick(full)
    return {k: [bool(torch.equal(a, b)) for a, b in zip(pick(cfg.replace(landmark_top_k=k)), reference)]
            for k in TOP_K if k < cfg.n_samples}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def markdown_table(rows: list[dict], title: str) -> str:
    """Medians per step over the targets of one source, with each step's gain over the one before."""
    targets = sorted({r["target"] for r in rows})
    present = {(r["method"], r["step"]) for r in rows}
    order = [(m, s) for m, s in [("start", "start")] + [("garbin", s) for s in STEPS[1:]] +
             [(m, "baseline") for m in METHODS if m != "garbin"] if (m, s) in present]
    by = {(r["target"], r["step"] if r["step"] != "baseline" else "baseline " + r["method"]): r for r in rows}
    lines = [f"**{title}** ({len(targets)} targets; medians)", "",
             "| step | eq. 1 loss | eq. 1 ratio to previous step | SSIM in Ia | W+ error (/w_std) "
             "| landmark error (% width, found) | seconds (cumulative) | gain |", "|---|---|---|---|---|---|---|---|"]
    previous = None
    for method, step in order:
        step = "baseline " + method if step == "baseline" else step
        here = [by[(t, step)] for t in targets if (t, step) in by]
        loss, ssim = _median(r["loss"] for r in here), _median(r["ssim"] for r in here)
        found = [r["landm_err"] for r in here if r["landm_err"] is not None]
        ratio, gain = None, ""
        if method != "start":
            before = previous if method == "garbin" else "start"     # baselines start from w̄
            pairs = [(by[(t, step)], by[(t, before)]) for t in targets if (t, step) in by and (t, before) in by]
            ratio = _median(a["loss"] / b["loss"] for a, b in pairs if b["loss"])
            if step == "selection":        # maximises SSIM over a set holding the rows above: >= by construction
                more = sum(a["ssim"] > b["ssim"] for a, b in pairs)
                gain = f"SSIM higher on {more}/{len(pairs)} (≥ by construction); eq. 1 ×{_fmt(ratio, 3)}"
            else:
                improved = sum(a["loss"] < b["loss"] for a, b in pairs)
                gain = (f"yes ({improved}/{len(pairs)})" if ratio is not None and ratio < 1 else
                        f"**no gain** (lower on {improved}/{len(pairs)})")
        if method in ("start", "garbin"):
            previous = step
        shown = {"start": "start (w̄)"}.get(step, step)
        w_err, landm = _fmt(_median(r["w_err"] for r in here), 3), _fmt(_median(found), 3)
        lines.append(f"| {shown} | {_fmt(loss)} | {_fmt(ratio, 3)} | {_fmt(ssim)} | {w_err} | "
                     f"{landm} ({len(found)}/{len(here)}) | {_fmt(_median(r['seconds'] for r in here), 3)} | {gain} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
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
    landmarks = None if args.no_landmarks else LandmarkError()
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
        rows += benchmark_target(G, inp, cfg, perceptual, methods, tid, kind, w_true, landmarks, args.seed, agreement)
        log.info("target %d/%d (%s) done, %.0f s so far", i + 1, len(targets), tid, time.perf_counter() - t0)
    overrides = " " + " ".join(args.overrides) if args.overrides else ""
    header = (f"Generator: {g_name} ({G.size}²), preset {args.preset}{overrides}, "
              f"perceptual terms: {'LPIPS ' + cfg.lpips_net if perceptual is not False else 'off (demo)'}, "
              f"device {args.device}, {args.threads} threads, seeds {cfg.n_seeds}, seed {args.seed}.")
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
    if args.out_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(buf.getvalue(), args.out_csv)
    return rows


if __name__ == "__main__":
    main()
