"""Deterministic, resumable data order for one or many ranks.

The training order is a function of ``(seed, epoch)`` only (``EpochSampler``, a ``DistributedSampler``
that can start mid-epoch), and every item's augmentation draws are a function of ``(seed, epoch,
index)`` (``SeededItems`` seeds the RNGs around each ``__getitem__``). So the data a step sees does not
depend on the number of DataLoader workers, on where a run was interrupted, or on the number of ranks
for a given global batch.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededItems(Dataset):
    """Wraps a map-style dataset; keys are ``(epoch, index)`` and each item is drawn with the global
    RNGs (python, numpy, torch) seeded from ``(seed, epoch, index)`` and restored afterwards. A dataset
    with its own generators (albumentations >= 2 pipelines) is reseeded through its ``reseed(seed)``."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        s = item_seed(self.seed, epoch, index)
        py, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(s)
                np.random.seed(s)
                torch.manual_seed(s)
                reseed = getattr(self.dataset, "reseed", None)
                if reseed is not None:
                    reseed(s)
                return self.dataset[index]
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys, able to start at a position of the
    epoch (``set_epoch(epoch, start=n)`` skips this rank's first ``n`` samples) for exact resume."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = itertools.islice(super().__iter__(), self.start, None)
        return ((self.epoch, i) for i in indices)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Validation: rank r reads items r, r + world, ... in order; no padding, no duplicates, so
    sums over ranks are sums over the test split."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        self.indices = list(range(rank, len(dataset), num_replicas))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((0, i) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    # Per-worker seeds for anything outside SeededItems (numpy is not seeded by PyTorch itself).
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: SeededItems, sampler: Sampler, batch_size: int, workers: int, drop_last: bool,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose own seed generator is private, so creating an iterator never consumes the
    global torch RNG (the uninterrupted and the resumed run draw the same numbers)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, worker_init_fn=_seed_worker,
                      generator=torch.Generator().manual_seed(dataset.seed),
                      persistent_workers=False)
