"""Epoch sampling of training slices with a set share of tumour-containing slices, and deterministic seeding.

An epoch is a fixed number of sampled slices (docs/method.md §3: by default the number of tumour-containing
training slices), so that changing the tumour share does not change what an epoch means. The sampler yields
(index, augmentation seed) pairs drawn from Generator((seed, epoch)); the dataset derives a sample's
augmentation from its own seed, so batches are identical for any number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class EpochSampler(Sampler):
    """Draws `num_samples` dataset indices per epoch, a share `tumor_share` of them from `tumor_items`.

    Within each pool indices are drawn without replacement while the pool lasts (a fresh permutation each
    time it runs out). `tumor_share=None` draws uniformly from all items. Call `set_epoch` before each epoch.
    """

    def __init__(self, tumor_items: Sequence[int], other_items: Sequence[int], num_samples: int | None = None,
                 tumor_share: float | None = 0.5, seed: int = 0):
        self.tumor = np.asarray(tumor_items, dtype=np.int64)
        self.other = np.asarray(other_items, dtype=np.int64)
        if len(self.tumor) + len(self.other) == 0:
            raise ValueError("no slices to sample from")
        if tumor_share is not None and not 0.0 <= tumor_share <= 1.0:
            raise ValueError(f"tumor_share must be in [0, 1], got {tumor_share}")
        self.num_samples = int(num_samples) if num_samples else (len(self.tumor) or len(self.other))
        self.tumor_share = tumor_share
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    @staticmethod
    def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        reps = -(-n // len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]

    def indices(self) -> list[tuple[int, int]]:
        """This epoch's (index, augmentation seed) pairs."""
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.tumor_share is None:
            chosen = self._draw(rng, np.concatenate([self.tumor, self.other]), self.num_samples)
        else:
            n_t = int(round(self.tumor_share * self.num_samples)) if len(self.tumor) else 0
            if not len(self.other):
                n_t = self.num_samples
            chosen = np.concatenate([self._draw(rng, self.tumor, n_t),
                                     self._draw(rng, self.other, self.num_samples - n_t)])
            chosen = chosen[rng.permutation(len(chosen))]
        seeds = rng.integers(0, 2**62, size=len(chosen))
        return [(int(i), int(s)) for i, s in zip(chosen, seeds, strict=True)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.indices())


def make_loader(dataset: Any, indices: Sequence[Any], batch_size: int, num_workers: int = 0, seed: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """The DataLoader training uses: `indices` (an epoch's (index, augmentation seed) pairs, sharded across
    ranks, or plain indices for validation) in the given order and in batches; `seed` seeds the generator the
    workers' base seeds come from. Batches do not depend on the number of workers: each item's augmentation
    derives from its own seed."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=list(indices), num_workers=num_workers,
                      generator=generator, pin_memory=pin_memory, drop_last=False)
