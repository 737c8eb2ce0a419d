"""Teacher quality per step: eq. 1 loss, SSIM inside Ia, W+ error, landmark error and seconds of every
step of Garbin et al.'s teacher and of the baselines, on one render at a time, and their Markdown table
(``r2s-benchmark-teacher-quality`` runs it over closed-loop and real renders)."""
from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np
import torch

from render2style.teacher.common import seed_generators, stream_key, synthesize
from render2style.teacher.config import TeacherConfig
from render2style.teacher.methods import LANDMARK_DETECTORS, METHODS
from render2style.teacher.run import build_problem, frozen, run_teacher
from render2style.teacher.sampling import sampling_step
from render2style.teacher.select import score_candidates

STEPS = ("start", "sampling", "csanns", "projector", "interpolation", "selection")
FIELDS = ("source", "target", "method", "step", "loss", "ssim", "w_err", "landm_err", "seconds")


class LandmarkError:
    """Mean distance of the landmarks found in two images, in % of the image width (None when no face is found in
    either one), both images upsampled to 256² for detection: ``detector`` "dlib" (68 points, the paper's) or "mtcnn"
    (facenet-pytorch's 5 points: eyes, nose, mouth corners; it also finds the small faces of a 64² generator, where
    dlib finds none)."""

    def __init__(self, detector: str = "dlib"):
        from render2style.alignment.landmarks import DlibLandmarks, MTCNNPoints
        if detector not in LANDMARK_DETECTORS:
            raise ValueError(f"landmark detector must be one of {LANDMARK_DETECTORS}, got {detector!r}")
        self.detector = detector
        self.points = DlibLandmarks() if detector == "dlib" else MTCNNPoints()
        self.found = self.tried = 0

    def _points(self, image: torch.Tensor) -> np.ndarray | None:
        x = torch.nn.functional.interpolate(image[None].float(), size=256, mode="bilinear", align_corners=False)
        rgb = ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        faces = self.points(rgb)
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
