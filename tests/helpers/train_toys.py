"""Tiny stand-ins for the training tests: a conv net with BatchNorm and a synthetic slice dataset.

They follow the interfaces training expects of the real ones (a model taking a list of phase tensors and
returning {'logits'}; dataset items {'phases': (P, 3, H, W), 'label': (H, W)}), so the loop, checkpoints,
resume and DDP are tested without the real networks and pre-processing.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mpliver.training.data import TrainingData
from mpliver.training.loop import tumor_target


class ToyNet(nn.Module):
    """conv-BN-ReLU-conv over the concatenated phases; `freeze_bn` keeps BatchNorm in eval mode."""

    def __init__(self, num_phases: int = 2, freeze_bn: bool = False, nan_after: int | None = None):
        super().__init__()
        self.config = SimpleNamespace(num_phases=num_phases)
        self.conv1 = nn.Conv2d(3 * num_phases, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 2, 1)
        self.freeze_bn = freeze_bn
        self.nan_after = nan_after  # forward calls in training mode before the logits turn NaN
        self.train_calls = 0

    def train(self, mode: bool = True) -> ToyNet:
        super().train(mode)
        if self.freeze_bn:
            self.bn.eval()
        return self

    def forward(self, phases):
        x = torch.cat(list(phases), dim=1)
        logits = self.conv2(F.relu(self.bn(self.conv1(x))))
        if self.training:
            self.train_calls += 1
            if self.nan_after is not None and self.train_calls > self.nan_after:
                logits = logits * float("nan")
        return {"logits": logits}


def ce_loss(outputs, target):
    return F.cross_entropy(outputs["logits"], target)


class ToySlices(torch.utils.data.Dataset):
    """Deterministic noisy discs (label 2) inside a liver square (label 1); optional augmentation drawn from
    the global torch RNG, as a real pipeline's would be."""

    def __init__(self, n: int = 12, size: int = 16, phases: int = 2, augment: bool = False, seed: int = 0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        self.items = []
        for _ in range(n):
            cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2, 4)
            label = np.ones((size, size), np.int64)
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
            label[:2], label[-2:] = 0, 0
            img = rng.normal(0.3, 0.1, (phases, 3, size, size)).astype(np.float32)
            img[1 % phases, :, label == 2] += 0.5
            self.items.append((torch.from_numpy(img), torch.from_numpy(label)))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        img, label = self.items[i]
        if self.augment:
            if torch.rand(()) < 0.5:
                img, label = img.flip(-1), label.flip(-1)
            img = img + 0.05 * torch.randn_like(img)
        return {"phases": img, "label": label}


def toy_data(n: int = 12, per_epoch: int = 8, augment: bool = False, seed: int = 0) -> TrainingData:
    train = ToySlices(n, augment=augment, seed=seed)
    val = ToySlices(5, seed=seed + 100)

    def epoch_indices(epoch: int) -> list[int]:
        return np.random.default_rng([seed, epoch]).integers(0, n, per_epoch).tolist()

    return TrainingData(train=train, epoch_indices=epoch_indices, val=val, target_fn=tumor_target)
