"""Small shared pieces of the teacher steps: synthesis under autocast, per-seed RNGs, step timing."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import numpy as np
import torch


def synthesize(G, w_plus: torch.Tensor, amp: bool = True,
               noise: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """``G.synthesis`` with the stored (const) noise or an explicit ``noise`` list; bf16 autocast on CUDA
    when ``amp``; float32 images out (the losses run in float32)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and w_plus.device.type == "cuda"):
        return G.synthesis(w_plus, noise_mode="const", noise=noise).float()


def seed_generators(seed: int, n: int, offset: int = 0) -> list[torch.Generator]:
    """Independent CPU generators for seed indices ``offset .. offset + n - 1`` of base ``seed``."""
    gens = []
    for i in range(offset, offset + n):
        state = int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] >> 1)
        gens.append(torch.Generator().manual_seed(state))
    return gens


def randn(gens: Sequence[torch.Generator], *shape: int, device=None) -> torch.Tensor:
    """``[len(gens), *shape]`` standard normal draws, one generator per leading index (CPU, then moved)."""
    return torch.stack([torch.randn(*shape, generator=g) for g in gens]).to(device)


def rand(gens: Sequence[torch.Generator], *shape: int, device=None) -> torch.Tensor:
    """``[len(gens), *shape]`` uniform [0, 1) draws, one generator per leading index."""
    return torch.stack([torch.rand(*shape, generator=g) for g in gens]).to(device)


class StepTimer:
    """Accumulates wall-clock seconds per named step (synchronizing CUDA so timings are honest)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = torch.device(device), {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
