"""Temporal smoothing of W+ codes along a frame sequence (``r2s-encode --smooth``).

``ema:ALPHA``: exponential moving average ``y_t = ALPHA·x_t + (1 − ALPHA)·y_{t−1}``, ``y_0 = x_0``
(ALPHA in (0, 1], the weight of the new frame: 1 is no smoothing; a constant rate of change lags by
(1 − ALPHA)/ALPHA frames).

``oneeuro:MIN_CUTOFF,BETA[,D_CUTOFF]``: the 1€ filter (Casiez, Roussel and Vogel, CHI 2012) on every
coordinate: a low-pass whose cutoff (Hz) rises with the coordinate's speed, ``f_c = MIN_CUTOFF +
BETA·|ẋ|`` (``ẋ`` low-passed at D_CUTOFF Hz, default 1), so slow drifts are smoothed hard and fast moves
follow with little lag. It uses the frames' timestamps (seconds), so variable frame rates are handled.
Speeds are in W units per second: W+ coordinates of a smoothly moving demo face move about 0.07 per second
(``r2s-benchmark-video``), so BETA of 10-50 is where the speed starts to matter there.

Both keep their state across calls: feed the batches of one sequence in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SmoothSpec:
    """A parsed ``--smooth`` value: ``kind`` "ema" (``alpha``) or "oneeuro" (``min_cutoff``, ``beta``, ``d_cutoff``)."""
    kind: str
    alpha: float = 1.0
    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def __str__(self) -> str:
        if self.kind == "ema":
            return f"ema:{self.alpha:g}"
        return f"oneeuro:{self.min_cutoff:g},{self.beta:g},{self.d_cutoff:g}"


def parse_smooth(text: str) -> SmoothSpec | None:
    """``"none"`` -> None; ``"ema:0.6"``, ``"oneeuro:0.3,20"`` (or ``...,D_CUTOFF``) -> :class:`SmoothSpec`;
    ValueError saying what was expected otherwise."""
    kind, _, args = text.strip().lower().partition(":")
    if kind == "none" and not args:
        return None
    try:
        values = [float(v) for v in args.split(",")] if args else []
    except ValueError:
        values = None
    if kind == "ema" and values is not None and len(values) == 1:
        if not 0 < values[0] <= 1:
            raise ValueError(f"--smooth {text}: the EMA weight of the new frame must be in (0, 1], got {values[0]:g}")
        return SmoothSpec("ema", alpha=values[0])
    if kind == "oneeuro" and values is not None and len(values) in (2, 3):
        min_cutoff, beta, d_cutoff = (*values, 1.0)[:3]
        if not (min_cutoff > 0 and beta >= 0 and d_cutoff > 0) or any(math.isinf(v) for v in values):
            raise ValueError(f"--smooth {text}: need MIN_CUTOFF > 0 Hz, BETA >= 0 and D_CUTOFF > 0 Hz")
        return SmoothSpec("oneeuro", min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
    raise ValueError(f"--smooth {text!r}: expected none, ema:ALPHA (e.g. ema:0.6) or "
                     "oneeuro:MIN_CUTOFF,BETA[,D_CUTOFF] (e.g. oneeuro:0.3,20)")


def _lowpass_weight(cutoff: torch.Tensor | float, dt: float) -> torch.Tensor | float:
    """The 1€ filter's smoothing factor ``1 / (1 + τ/dt)`` with ``τ = 1 / (2π·cutoff)``."""
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


class CodeSmoother:
    """``smoother(codes [B, ...], times [B] seconds) -> smoothed codes`` frame by frame, state kept between calls."""

    def __init__(self, spec: SmoothSpec):
        if spec.kind not in ("ema", "oneeuro"):
            raise ValueError(f"unknown smoothing {spec.kind!r}; expected ema or oneeuro")
        self.spec = spec
        self.prev: torch.Tensor | None = None       # last output
        self.prev_x: torch.Tensor | None = None     # last input (1€: the speed)
        self.dx: torch.Tensor | None = None         # low-passed speed (1€)
        self.prev_t: float | None = None

    def step(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """One frame's code at time ``t`` (seconds) -> its smoothed code."""
        s, x = self.spec, x.float()
        if self.prev is None:
            y = x.clone()
            self.dx = torch.zeros_like(x)
        elif s.kind == "ema":
            y = s.alpha * x + (1 - s.alpha) * self.prev
        else:
            dt = t - self.prev_t
            if not dt > 0:
                raise ValueError(f"frame times must increase: {self.prev_t} then {t}")
            a_d = _lowpass_weight(s.d_cutoff, dt)
            self.dx = a_d * (x - self.prev_x) / dt + (1 - a_d) * self.dx
            a = _lowpass_weight(s.min_cutoff + s.beta * self.dx.abs(), dt)
            y = a * x + (1 - a) * self.prev
        self.prev, self.prev_x, self.prev_t = y, x, t
        return y

    def __call__(self, codes: torch.Tensor, times: list[float]) -> torch.Tensor:
        if len(codes) != len(times):
            raise ValueError(f"{len(codes)} codes but {len(times)} frame times")
        return torch.stack([self.step(c, float(t)) for c, t in zip(codes, times)])
