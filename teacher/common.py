"""Small shared pieces of the teacher steps: synthesis under autocast, per-seed RNGs, step timing."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


def synthesize(G, w_plus: torch.Tensor, amp: bool = True,
               noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``G.synthesis`` with the stored (const) noise or an explicit ``noise`` list; bf16 autocast on CUDA
    when ``amp``; float32 images out (the losses run in float32)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and w_plus.device.type == "cuda"):
        return G.synthesis(w_plus, noise_mode="const", noise=noise).float()


def stream_key(render_id: str = "", flip: bool = False) -> tuple[int, int]:
    """The part of every random stream that identifies one render: (64-bit hash of its id, flip)."""
    digest = hashlib.sha256(render_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little"), int(flip)


def seeded_generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one ``purpose`` ("priors", "closed_loop", ...) of base ``seed``, from
    SeedSequence([seed, hash(purpose)]): its draws never coincide with those after ``torch.manual_seed(seed)``
    (which, e.g., made the demo generator's weights)."""
    state = np.random.SeedSequence([seed, stream_key(purpose)[0]]).generate_state(1, dtype=np.uint64)[0] >> 1
    return torch.Generator(device=device).manual_seed(int(state))


def seed_generators(seed: int, n: int, offset: int = 0, key: Sequence[int] = (),
                    device: torch.device | str = "cpu") -> list[torch.Generator]:
    """Independent generators on ``device`` for seed indices ``offset .. offset + n - 1`` of base ``seed``
    and the render ``key`` (:func:`stream_key`): every (seed, render, flip, index) has its own stream.
    Streams are reproducible per device type (CPU and CUDA generators differ)."""
    gens = []
    for i in range(offset, offset + n):
        state = int(np.random.SeedSequence([seed, *key, i]).generate_state(1, dtype=np.uint64)[0] >> 1)
        gens.append(torch.Generator(device=device).manual_seed(state))
    return gens


def randn(gens: Sequence[torch.Generator], *shape: int) -> torch.Tensor:
    """``[len(gens), *shape]`` standard normal draws on the generators' device, one generator per row."""
    return torch.stack([torch.randn(*shape, generator=g, device=g.device) for g in gens])


def rand(gens: Sequence[torch.Generator], *shape: int) -> torch.Tensor:
    """``[len(gens), *shape]`` uniform [0, 1) draws on the generators' device, one generator per row."""
    return torch.stack([torch.rand(*shape, generator=g, device=g.device) for g in gens])


def randint(gens: Sequence[torch.Generator], high: int, *shape: int) -> torch.Tensor:
    """``[len(gens), *shape]`` integers in [0, high) on the generators' device, one generator per row."""
    return torch.stack([torch.randint(high, shape, generator=g, device=g.device) for g in gens])


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
