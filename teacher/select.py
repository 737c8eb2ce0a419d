"""Step 3b (interpolation candidates) and step 4 (selection by SSIM) of Garbin et al."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from render2style.criteria.ssim import ssim
from render2style.teacher.common import synthesize
from render2style.teacher.losses import TeacherLoss
from render2style.teacher.masks import resize


def interpolation_candidates(w_f: torch.Tensor, w_n: torch.Tensor, layers: Sequence[int] = (1, 3, 5, 7),
                             alphas: Sequence[float] = (1.0, 0.9, 0.8, 0.7)) -> tuple[torch.Tensor, list[str]]:
    """Eq. 4 on the first k layers: w = w_f·√α + w_n·√(1 − α) for layers < k, w_n elsewhere.

    ``w_f``, ``w_n`` ``[S, L, D]`` -> (``[S, len(layers)·len(alphas), L, D]``, names ``interp_k{k}_a{α}``)."""
    out, names = [], []
    for k in layers:
        for a in alphas:
            w = w_n.clone()
            w[:, :k] = w_f[:, :k] * math.sqrt(a) + w_n[:, :k] * math.sqrt(1.0 - a)
            out.append(w)
            names.append(f"interp_k{k}_a{a:g}")
    return torch.stack(out, dim=1), names


@dataclass
class Scores:
    """One render's candidates, scored: SSIM ``[M]``, eq. 1 without landmarks ``[M]`` (or None), the index of
    the selected candidate (:func:`select_best`) and its image ``[1, 3, S, S]``."""
    ssim: torch.Tensor
    loss: torch.Tensor | None
    best: int
    image: torch.Tensor


@torch.no_grad()
def score_renders(G, codes: Sequence[torch.Tensor], renders: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                  losses: Sequence[TeacherLoss] | None = None, size: int = 368, chunk: int = 16, amp: bool = True,
                  noises: Sequence[Sequence[torch.Tensor]] | None = None) -> list[Scores]:
    """Step 4 for several renders at once: SSIM between render r (``renders[r]`` ``[1, 3, H, W]``) and G(w)
    (const noise) for each of its W+ codes ``codes[r]`` ``[M_r, L, D]``, both resized to ``size``²; the SSIM
    map is averaged with the loss mask ``masks[r]`` ``[1, 1, H, W]`` as weight (the face region counts fully,
    the falloff partly, the far background not at all). Also eq. 1 without landmarks when ``losses`` are given.
    All renders' codes go through the generator together, ``chunk`` at a time, and the selected code's image
    is kept, not made again. ``noises[r]``: the noise maps (``[1, 1, r, r]`` each) render r's codes were fitted
    with, when not the generator's stored ones (for all renders or for none)."""
    counts = [len(c) for c in codes]
    starts = [sum(counts[:r]) for r in range(len(codes))]
    owner = torch.repeat_interleave(torch.arange(len(codes)), torch.tensor(counts))
    flat = torch.cat(list(codes))
    targets = torch.cat([resize(t.float(), size) for t in renders])
    weights = torch.cat([resize(m.float(), size) for m in masks])
    ssims, values = torch.empty(len(flat)), torch.empty(len(flat))
    best, images = [-1] * len(codes), [None] * len(codes)
    for lo in range(0, len(flat), chunk):
        hi = min(lo + chunk, len(flat))
        who = owner[lo:hi]
        noise = None if noises is None else [torch.cat([noises[r][k] for r in who.tolist()])
                                             for k in range(len(noises[0]))]
        x = synthesize(G, flat[lo:hi], amp, noise=noise)
        ssims[lo:hi] = ssim(resize(x, size), targets[who], mask=weights[who]).float().cpu()
        for r in who.unique().tolist():
            a, b = max(lo, starts[r]), min(hi, starts[r] + counts[r])      # render r's rows in this chunk
            if losses is not None:
                values[a:b] = losses[r](x[a - lo:b - lo])["total"].float().cpu()
            i = select_best(ssims[starts[r]:b])              # the best so far is in this chunk when it changed
            if i != best[r]:
                best[r], images[r] = i, x[starts[r] + i - lo][None].clone()
    return [Scores(ssims[s:s + n], values[s:s + n] if losses is not None else None, best[r], images[r])
            for r, (s, n) in enumerate(zip(starts, counts))]


@torch.no_grad()
def score_candidates(G, w_plus: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     loss: TeacherLoss | None = None, size: int = 368, chunk: int = 16,
                     amp: bool = True, noise: Sequence[torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`score_renders` for one render's W+ codes ``[M, L, D]``: SSIM ``[M]`` and eq. 1 ``[M]`` (or None)."""
    s = score_renders(G, [w_plus], [target], [mask], [loss] if loss is not None else None, size, chunk, amp,
                      [noise] if noise else None)[0]
    return s.ssim, s.loss


def select_best(scores: torch.Tensor) -> int:
    """Index of the highest SSIM (the first one on ties); a NaN score is never selected over a number."""
    return int(torch.argmax(torch.nan_to_num(scores.float(), nan=-math.inf)))
