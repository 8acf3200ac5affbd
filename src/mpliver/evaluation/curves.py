"""Learning curves: validation Dice against epochs, per row of an experiment set, over its runs (folds and
training seeds), to show where training flattens and so whether an epoch budget is enough.

The value is the training loop's `val_dice` (log.csv): tumour Dice pooled over the validation slices of each
epoch, in %. It tracks the per-case DPC of the test folds but is not the same number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpliver.evaluation.aggregate import mean_sd
from mpliver.evaluation.figures import _figure, _save


@dataclass(frozen=True)
class Curve:
    """Mean and sample SD over runs of one value per epoch; `runs` counts the runs that logged that epoch."""

    epochs: list[int]
    mean: list[float]
    sd: list[float | None]
    runs: list[int]


def mean_curve(logs: Sequence[Sequence[Mapping[str, float]]], key: str = "val_dice",
               scale: float = 100.0) -> Curve:
    """Average `key` x `scale` per epoch over runs (each a list of log rows); epochs without a finite value
    in a run are left out of that run."""
    by_epoch: dict[int, list[float]] = {}
    for rows in logs:
        for row in rows:
            value = row.get(key)
            if value is None or not math.isfinite(value):
                continue
            by_epoch.setdefault(int(row["epoch"]), []).append(value * scale)
    epochs = sorted(by_epoch)
    mean, sd = [], []
    for e in epochs:
        m, s, _ = mean_sd(by_epoch[e])
        mean.append(m)
        sd.append(s)
    return Curve(epochs, mean, sd, [len(by_epoch[e]) for e in epochs])


def learning_curve_png(path: str | Path, logs: Mapping[str, Sequence[Sequence[Mapping[str, float]]]],
                       title: str = "") -> Path:
    """One colour per row: each run thin, the mean over runs thick with a ± SD band."""
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for i, (name, runs) in enumerate(logs.items()):
        color = f"C{i % 10}"
        for rows in runs:
            ax.plot([r["epoch"] for r in rows], [100 * r.get("val_dice", math.nan) for r in rows], "-",
                    color=color, lw=0.6, alpha=0.35)
        curve = mean_curve(runs)
        if not curve.epochs:
            continue
        ax.plot(curve.epochs, curve.mean, "-o", color=color, lw=2, ms=3,
                label=f"{name} (n={max(curve.runs)})")
        drawn = True
        low = [m - (s or 0.0) for m, s in zip(curve.mean, curve.sd, strict=True)]
        high = [m + (s or 0.0) for m, s in zip(curve.mean, curve.sd, strict=True)]
        ax.fill_between(curve.epochs, low, high, color=color, alpha=0.12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice (%), slices pooled")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, title="row (runs)", title_fontsize=7)
    ax.set_title(title or "Learning curves: mean over folds and seeds (± SD), each run thin", fontsize=9)
    return _save(fig, path)
