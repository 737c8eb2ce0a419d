"""Step 3b (interpolation candidates) and step 4 (selection by SSIM) of Garbin et al."""
from __future__ import annotations

import math
from collections.abc import Sequence

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


@torch.no_grad()
def score_candidates(G, w_plus: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     loss: TeacherLoss | None = None, size: int = 368, chunk: int = 16,
                     amp: bool = True, noise: Sequence[torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SSIM ``[M]`` between the render ``target`` ``[1, 3, H, W]`` and G(w) (const noise) for W+ codes
    ``[M, L, D]``, both resized to ``size``²; the SSIM map is averaged with the loss mask ``mask``
    ``[1, 1, H, W]`` as weight (the face region counts fully, the falloff partly, the far background
    not at all). Also eq. 1 without landmarks ``[M]`` when ``loss`` is given. ``noise``: the noise maps
    (``[1, 1, r, r]`` each) that the codes were fitted with, when not the generator's stored ones."""
    t = resize(target.float(), size)
    m = resize(mask.float(), size)
    scores, losses = [], []
    for w in w_plus.split(chunk):
        x = synthesize(G, w, amp, noise=[n.expand(len(w), -1, -1, -1) for n in noise] if noise else None)
        scores.append(ssim(resize(x, size), t.expand(len(w), -1, -1, -1), mask=m))
        if loss is not None:
            losses.append(loss(x)["total"])
    return torch.cat(scores), (torch.cat(losses) if loss is not None else None)


def select_best(scores: torch.Tensor) -> int:
    """Index of the highest SSIM (the first one on ties)."""
    return int(torch.argmax(scores))
