"""Zero-shot optimization teacher: Garbin et al. (steps 1-4), Image2StyleGAN and the StyleGAN2 projector.

``run_teacher(method, G, TeacherInput(...), TeacherConfig(), perceptual, seed)`` -> ``TeacherResult``.
"""
from render2style.teacher.config import TeacherConfig, TeacherInput, TeacherResult
from render2style.teacher.losses import PerceptualNets, TeacherLoss
from render2style.teacher.priors import resolve_priors
from render2style.teacher.run import METHODS, run_teacher

__all__ = ["run_teacher", "TeacherConfig", "TeacherInput", "TeacherResult", "PerceptualNets", "TeacherLoss",
           "resolve_priors", "METHODS"]
