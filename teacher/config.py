"""The teacher's configuration (paper defaults), its input and its result."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass
class TeacherConfig:
    """Hyper-parameters of the teacher; defaults are Garbin et al.'s (steps 1-4) and Image2StyleGAN's.

    ``centroids`` ``[k, 512]``, ``control_vectors`` ``[n, 512]``, ``w_avg`` ``[512]`` and ``w_std``
    describe the generator's W space; left as None they are computed by :func:`resolve_priors`
    (k-means centroids, principal directions, mean latent). Compute them once per generator.
    """
    # masks and eq. 1 (paper §3, step 1)
    include_hair: bool = True          # loss mask = falloff around face ∪ hair
    falloff_power: float = 10.0
    loss_size: int = 256
    blur_kernel: int = 7
    blur_sigma: float = 0.15           # relative to the kernel: σ = 0.15 × 7 = 1.05 px at loss_size (masks.preprocess)
    lpips_net: str = "vgg"             # LPIPS backbone: "vgg" (the StyleGAN2 projector's) or "alex"
    lambda_lpips: float = 1.0
    lambda_lum: float = 0.1
    lambda_col: float = 0.01
    lambda_landm: float = 1e-5
    landmarks_in_sampling: bool = True  # dlib term in step 1's ranking (about 2 ms per sample on the CPU)
    landmark_top_k: int = 16           # ... for the k best samples per seed by the landmark-free loss
    # latent priors
    centroids: Optional[torch.Tensor] = None
    control_vectors: Optional[torch.Tensor] = None
    w_avg: Optional[torch.Tensor] = None
    w_std: Optional[float] = None
    n_centroids: int = 8               # k-means centroids when none are given (paper: curated)
    n_control: int = 33                # principal directions when no control vectors are given
    prior_samples: int = 10000         # mapped z samples for k-means / PCA / w_std
    # step 1: sampling
    n_samples: int = 512
    sample_sigma: float = 0.5          # N(0, sigma²) with sigma² = 0.25
    control_scale: float = 2.0         # control vectors × U[-1, 1] × 2.0
    chunk: int = 32                    # images per generator call when ranking samples
    # step 2: CS-ANNS
    csanns_outer: int = 96
    csanns_proposals: int = 512
    csanns_inner: int = 8
    csanns_lr: float = 0.01
    csanns_lr_decay_every: int = 4
    csanns_lr_decay: float = 10.0
    csanns_blend: tuple[float, float] = (0.25, 0.75)
    csanns_init_weight: float = 0.98   # w_n's softmax weight at the start of each outer iteration
    csanns_logit_scale: float = 250.0  # logits = scale · θ: lr 0.01 moves a logit by 2.5 (see csanns.py)
    csanns_beta_scale: float = 50.0    # β = scale · θ_β: lr 0.01 moves β by 0.5
    beta_max: float = 2.0
    # step 3: masked projector (StyleGAN2 projector schedule)
    proj_steps: int = 1000
    proj_lr: float = 0.01
    proj_noise: float = 0.01           # initial latent noise, × w_std
    proj_noise_ramp: float = 0.75
    proj_lr_rampdown: float = 0.25
    proj_lr_rampup: float = 0.05
    proj_noise_reg: float = 1e5        # noise-map regularisation (projector baseline only)
    baseline_proj_lr: float = 0.1      # projector baseline from w̄: the official projector's lr and noise
    baseline_proj_noise: float = 0.05
    baseline_optimize_noise: bool = True  # the official projector fits the noise maps (Garbin's step 3 does not)
    # step 3b / 4
    interp_layers: tuple[int, ...] = (1, 3, 5, 7)
    interp_alphas: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7)
    select_size: int = 368
    n_seeds: int = 10
    seed_batch: int = 10               # seeds optimized together in one batch
    # Image2StyleGAN baseline
    i2s_steps: int = 5000
    i2s_lr: float = 0.01
    i2s_lambda_mse: float = 1.0
    i2s_size: int = 256
    # dual-generator teacher (Wang et al. §3.3): the projection in G_rendering
    dual_steps: int = 500
    dual_lpips_only: bool = True       # eq. 4: LPIPS alone (eq. 1's YUV terms stay on without perceptual terms)
    # speed
    amp: bool = True                   # bf16 autocast for the generator on CUDA (losses stay float32)

    def __post_init__(self):
        positive = ("loss_size", "n_samples", "chunk", "csanns_proposals", "csanns_inner", "csanns_lr_decay_every",
                    "select_size", "n_seeds", "seed_batch", "i2s_size", "prior_samples", "n_centroids", "dual_steps")
        non_negative = ("csanns_outer", "proj_steps", "i2s_steps", "n_control", "landmark_top_k", "blur_kernel")
        for name in positive + non_negative:
            v, low = getattr(self, name), 1 if name in positive else 0
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"TeacherConfig.{name} must be an integer >= {low}, got {v!r}")
        if not 0 < self.csanns_init_weight < 1:
            raise ValueError(f"TeacherConfig.csanns_init_weight must be in (0, 1), got {self.csanns_init_weight}")
        lo, hi = self.csanns_blend
        if not 0 <= lo <= hi <= 1:
            raise ValueError("TeacherConfig.csanns_blend must be (lo, hi) with 0 <= lo <= hi <= 1, "
                             f"got {self.csanns_blend}")

    @classmethod
    def demo(cls, **overrides: Any) -> TeacherConfig:
        """CPU preset for the 64² demo generator (about 10-20 s per image on 2 cores): fewer samples,
        proposals, iterations and seeds; losses and selection at the generator's 64²."""
        preset = dict(loss_size=64, select_size=64, n_samples=64, csanns_outer=6, csanns_proposals=64,
                      csanns_inner=8, proj_steps=60, n_seeds=2, seed_batch=2, i2s_steps=120, dual_steps=120,
                      i2s_size=64, n_centroids=4, n_control=8, prior_samples=2000, chunk=32)
        preset.update(overrides)
        return cls(**preset)

    def replace(self, **changes: Any) -> TeacherConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse_overrides(cls, items: Sequence[str]) -> dict[str, Any]:
        """``["key=value", ...]`` (the ``--set`` option) -> field changes, each value parsed as the field's
        declared type: bool, int, float, str, tuples as ``a,b,c``; tensor fields (``centroids``,
        ``control_vectors``, ``w_avg``) from a ``.pt`` / ``.npy`` vectors file; ``none`` for optional ones."""
        hints = typing.get_type_hints(cls)
        out = {}
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or key not in hints:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY a TeacherConfig field")
            try:
                out[key] = _parse_value(hints[key], text)
            except (TypeError, ValueError) as e:
                raise ValueError(f"--set {item!r}: {e}") from None
        return out

    def as_dict(self) -> dict:
        """JSON-friendly hyper-parameters (the tensors are summarised by their shapes)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v.shape) if isinstance(v, torch.Tensor) else (list(v) if isinstance(v, tuple) else v)
        return out


def _parse_value(hint: Any, text: str) -> Any:
    """``text`` as a value of the type ``hint`` (see :meth:`TeacherConfig.parse_overrides`)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:          # Optional[X]
        return None if text.strip().lower() == "none" else _parse_value(args[0], text)
    if typing.get_origin(hint) is tuple:
        return tuple(_parse_value(args[0], v) for v in text.split(",") if v.strip())
    if hint is bool:
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    if hint is torch.Tensor:
        from render2style.teacher.control_vectors import load_vectors
        return load_vectors(text)[0]
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if hint is int else 'a number'}, got {text!r}") from None
    return hint(text)


@dataclass
class TeacherInput:
    """One render: ``image`` ``[1, 3, H, W]`` in [-1, 1]; ``face_mask`` ``[1, 1, H, W]`` in [0, 1];
    ``hair_mask`` like it or None; ``landmarks`` ``[68, 2]`` in pixels of ``image`` or None."""
    image: torch.Tensor
    face_mask: torch.Tensor
    hair_mask: Optional[torch.Tensor] = None
    landmarks: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.image.ndim != 4 or self.image.shape[:2] != (1, 3):
            raise ValueError(f"TeacherInput.image must be [1, 3, H, W], got {tuple(self.image.shape)}")
        for name in ("face_mask", "hair_mask"):
            m = getattr(self, name)
            if m is not None and tuple(m.shape) != (1, 1, *self.image.shape[-2:]):
                raise ValueError(f"TeacherInput.{name} must be [1, 1, {self.image.shape[-2]}, "
                                 f"{self.image.shape[-1]}], got {tuple(m.shape)}")
        if self.landmarks is not None and tuple(self.landmarks.shape) != (68, 2):
            raise ValueError(f"TeacherInput.landmarks must be [68, 2], got {tuple(self.landmarks.shape)}")


@dataclass
class TeacherResult:
    """``w_plus`` ``[n_latent, 512]`` (CPU float32), ``image`` = G.synthesis(w_plus, "const") ``[3, S, S]``
    (with ``noise``, the fitted noise maps ``[1, r, r]`` per layer, when the method fits them: the projector
    baseline; None means the generator's stored noise),
    ``metrics`` (loss terms, ssim, seconds per step, perceptual flag, ...), ``candidates``: one dict per
    proposal ``{"step", "seed", "ssim", "loss", "w_plus"}`` (empty for the baselines' single result)."""
    w_plus: torch.Tensor
    image: torch.Tensor
    metrics: dict
    candidates: list = field(default_factory=list)
    noise: Optional[list] = None
