"""Running a pSp model for inference: device choice, autocast precision, optional ``torch.compile``."""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import Callable

import torch
import torch.nn.functional as F

from render2style.encoders.fold import inference_encoder
from render2style.utils.malloc import retain_freed_memory

log = logging.getLogger(__name__)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str | None = None) -> torch.device:
    """``name`` when given, else CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pad_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` [B, ...] with its last item repeated up to ``size`` rows (a compiled model then sees one batch
    shape and is not recompiled for a smaller last batch); the caller keeps the first B results."""
    if len(x) >= size:
        return x
    return torch.cat([x, x[-1:].expand(size - len(x), *x.shape[1:])])


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Fallback:
    """Calls a compiled function; if compiling or running it fails, warns once and runs eagerly."""

    def __init__(self, eager: Callable, name: str, mode: str | None = None):
        self.eager, self.name = eager, name
        self.fn = torch.compile(eager, mode=mode)

    def __call__(self, *args, **kwargs):
        if self.fn is self.eager:
            return self.eager(*args, **kwargs)
        try:
            return self.fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001  (any compiler failure: missing C compiler, unsupported op, ...)
            log.warning("torch.compile of %s failed (%s: %s); running eagerly", self.name, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "")
            self.fn = self.eager
            return self.eager(*args, **kwargs)


class InferenceModel:
    """A pSp model ready for inference: ``encode(x)`` -> W+ codes (float32), ``decode(codes)`` -> images
    (float32, [-1, 1]), under autocast ``dtype`` ("fp32" | "bf16" | "fp16") and optionally compiled
    (``compile_mode``: torch.compile's mode, e.g. "reduce-overhead" for CUDA graphs)."""

    def __init__(self, net: torch.nn.Module, device: torch.device, dtype: str = "fp32", compile: bool = False,
                 compile_mode: str | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if dtype == "fp16" and device.type == "cpu":
            log.warning("fp16 autocast on the CPU is slow and less accurate than bf16; consider --dtype bf16")
        if device.type == "cpu":
            retain_freed_memory()       # no page faults on every large activation (utils/malloc.py)
        self.net, self.device, self.dtype = net.eval().to(device), device, dtype
        self.n_latent = net.decoder.n_latent
        # BatchNorm folded into the convolutions, channels_last, weights in the autocast dtype (a copy: ``net``
        # keeps its own encoder)
        self._encode = functools.partial(net.encode, encoder=inference_encoder(net.encoder, DTYPES[dtype]))
        self._decode = self._synthesize
        if compile and device.type == "cpu":
            log.warning("--compile on the CPU: compiling takes minutes before the first batch (126 s for the demo "
                        "encoder on 2 cores; seconds once torch's compile cache holds it) and the compiled model was "
                        "no faster there; --compile is meant for GPUs")
        if compile:
            self._encode = _Fallback(self._encode, "the encoder", compile_mode)
            self._decode = _Fallback(self._synthesize, "the generator", compile_mode)

    def _synthesize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net.decoder.synthesis(codes, noise_mode="const")

    def _autocast(self):
        amp = DTYPES[self.dtype]
        return torch.autocast(self.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, input_nc, S, S] in [-1, 1] -> W+ [B, n_latent, 512] float32."""
        with self._autocast():
            codes = self._encode(x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last))
        codes = codes.float()
        if codes.ndim == 2:                              # learn_in_w: one W for every layer
            codes = codes.unsqueeze(1).repeat(1, self.n_latent, 1)
        return codes

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, resize: bool = False) -> torch.Tensor:
        """W+ [B, n_latent, 512] -> images [B, 3, R, R] float32 (R = 256 when ``resize`` and larger)."""
        with self._autocast():
            images = self._decode(codes.to(self.device))
        images = images.float()
        if resize and images.shape[-1] > 256:
            images = F.adaptive_avg_pool2d(images, (256, 256))
        return images

    def __call__(self, x: torch.Tensor, resize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        return self.decode(codes, resize), codes


def timed(fn: Callable, device: torch.device, *args, **kwargs):
    """(result, seconds) with the device synchronized before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - t0
