"""Zero-shot optimization teacher: Garbin et al. (steps 1-4), Image2StyleGAN and the StyleGAN2 projector.

``run_teacher(method, G, TeacherInput(...), TeacherConfig(), perceptual, seed)`` -> ``TeacherResult``.
Names are imported on first use, so ``render2style.teacher.methods`` (for option parsers) stays light.
"""
from __future__ import annotations

from render2style.utils.lazy import lazy_exports

_EXPORTS = {
    "TeacherConfig": "config", "TeacherInput": "config", "TeacherResult": "config",
    "PerceptualNets": "losses", "TeacherLoss": "losses", "resolve_priors": "priors",
    "run_teacher": "run", "METHODS": "methods",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
