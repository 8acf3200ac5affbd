"""The loop pieces: batch unpacking, targets, pooled validation Dice (against numpy), epoch statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpliver.errors import MpliverError
from mpliver.training.loop import (
    liver_target,
    split_batch,
    train_one_epoch,
    tumor_target,
    validate,
)


class FixedPrediction(nn.Module):
    """Returns logits that make `masks[i]` the prediction of item i (item index carried in channel 0)."""

    def __init__(self, masks: torch.Tensor):
        super().__init__()
        self.masks = masks
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, phases):
        idx = phases[0][:, 0, 0, 0].round().long()
        fg = self.masks[idx].float()
        return {"logits": torch.stack([1 - fg, fg], dim=1) * 4.0 - 2.0 + self.dummy}


def test_split_batch_forms_and_errors():
    x = torch.zeros(4, 2, 3, 8, 8)
    y = torch.zeros(4, 8, 8, dtype=torch.long)
    phases, label = split_batch({"phases": x, "label": y})
    assert len(phases) == 2 and phases[0].shape == (4, 3, 8, 8) and label is y
    phases, _ = split_batch((list(x.unbind(1)), y), num_phases=1)
    assert len(phases) == 1
    with pytest.raises(MpliverError, match="needs 3 phases"):
        split_batch({"phases": x, "label": y}, num_phases=3)
    with pytest.raises(MpliverError, match=r"\(B, P, C, H, W\)"):
        split_batch({"phases": torch.zeros(4, 3, 8, 8), "label": y})


def test_targets():
    label = torch.tensor([[0, 1, 2]])
    assert tumor_target(label).tolist() == [[0, 0, 1]]
    assert liver_target(label).tolist() == [[0, 1, 1]]


def test_validate_dice_is_pooled_over_slices():
    rng = np.random.default_rng(0)
    n, size = 7, 12
    pred = torch.from_numpy(rng.random((n, size, size)) < 0.3)
    ref = torch.from_numpy(rng.random((n, size, size)) < 0.25)
    ref[3] = False  # a slice without reference foreground still counts its false positives
    items = []
    for i in range(n):
        x = torch.full((2, 3, size, size), float(i))
        items.append({"phases": x, "label": ref[i].long()})
    loader = torch.utils.data.DataLoader(items, batch_size=3)

    def loss_fn(outputs, target):
        return F.cross_entropy(outputs["logits"], target)

    stats = validate(FixedPrediction(pred), loader, loss_fn, torch.device("cpu"))
    p, r = pred.numpy(), ref.numpy()
    expected = 2.0 * np.logical_and(p, r).sum() / (p.sum() + r.sum())
    assert stats.slices == n and stats.dice == pytest.approx(expected, rel=1e-12)
    # the loss is the slice-weighted mean of the batch losses (batches of 3, 3, 1)
    index_images = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 3, size, size)
    logits = FixedPrediction(pred)([index_images])["logits"].detach()
    per_slice = F.cross_entropy(logits, ref.long(), reduction="none").mean(dim=(1, 2))
    assert stats.loss == pytest.approx(float(per_slice.mean()), rel=1e-5)
    # nothing predicted and nothing there: Dice 1
    empty = [{"phases": torch.zeros(2, 3, size, size), "label": torch.zeros(size, size, dtype=torch.long)}]
    none = validate(FixedPrediction(torch.zeros(1, size, size, dtype=torch.bool)),
                    torch.utils.data.DataLoader(empty), loss_fn, torch.device("cpu"))
    assert none.dice == 1.0


def test_train_one_epoch_reports_mean_loss_and_speed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    wrapped = _DictModel(model)
    items = [{"phases": torch.randn(1, 3, 4, 4), "label": torch.randint(0, 2, (4, 4))} for _ in range(5)]
    loader = torch.utils.data.DataLoader(items, batch_size=2)
    seen = []
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    stats = train_one_epoch(wrapped, loader, opt, lambda o, t: F.cross_entropy(o["logits"], t),
                            torch.device("cpu"), on_step=lambda step, loss: seen.append(loss))
    assert len(seen) == 3 and stats.loss == pytest.approx(np.mean(seen)) and stats.slices == 5
    assert stats.slices_per_s > 0


class _DictModel(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, phases):
        return {"logits": self.net(phases[0])}


def test_validate_leaves_ignored_pixels_out_of_the_dice():
    from mpliver.io.labels import IGNORE_INDEX

    size = 8
    pred = torch.zeros(2, size, size, dtype=torch.bool)
    pred[0, :4, :4] = True  # 16 pixels, of which 8 fall on ignored pixels
    ref = torch.zeros(2, size, size, dtype=torch.long)
    ref[0, :2, :4] = 1      # 8 pixels, all predicted
    ref[0, 2:4, :4] = IGNORE_INDEX
    ref[1, 5:, 5:] = IGNORE_INDEX
    items = [{"phases": torch.full((1, 3, size, size), float(i)), "label": ref[i]} for i in range(2)]

    def loss_fn(outputs, target):
        return F.cross_entropy(outputs["logits"], target)

    stats = validate(FixedPrediction(pred), torch.utils.data.DataLoader(items, batch_size=2), loss_fn,
                     torch.device("cpu"))
    assert stats.dice == pytest.approx(1.0) and np.isfinite(stats.loss)
    assert stats.foreground == 8  # reference tumour pixels, the ignored ones not counted


def test_best_epoch_is_the_latest_when_validation_has_no_foreground():
    """A validation set without reference foreground rewards predicting nothing (Dice 1 for every empty
    prediction, and the lowest loss), so every epoch replaces the best and the run keeps its latest; with
    foreground, the best is the highest Dice (train.best_metric=val_dice) or the lowest loss (val_loss)."""
    from types import SimpleNamespace

    from mpliver.training.loop import EpochStats, ValStats
    from mpliver.training.trainer import Trainer

    def run(vals, metric="val_dice"):
        fake = SimpleNamespace(best=None, config=SimpleNamespace(
            train=SimpleNamespace(best_metric=metric), optim=SimpleNamespace(epochs=len(vals))))
        stats = EpochStats(loss=0.1, slices=8, seconds=1.0)
        return [Trainer.record(fake, e, 1e-3, stats, v).improved for e, v in enumerate(vals)]

    empty = [ValStats(loss, dice, 4, 0) for loss, dice in ((0.9, 1.0), (0.5, 0.0), (0.7, 1.0), (0.4, 0.0))]
    assert run(empty) == [True, True, True, True] and run(empty, "val_loss") == [True, True, True, True]
    some = [ValStats(0.9, 0.1, 4, 50), ValStats(0.5, 0.05, 4, 50), ValStats(0.7, 0.3, 4, 50)]
    assert run(some) == [True, False, True] and run(some, "val_loss") == [True, True, False]
