"""A tiny synthetic cohort and a tiny training config shared by the crossval, experiments and report tests.

The cohort is written once per test session (under pytest's base temp folder), so that its pre-processed
cache is built once too. The config trains a quarter-width network with one block per stage on 32x32 crops
for one epoch of four slices: the tests check the plumbing (folds, predictions, tables, skipping), not the
accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

from mpliver.training.trainer import train as train_run

TINY_OVERRIDES = [
    "model.width=0.25", "model.blocks=[1,1,1,1]", "model.decoder_channels=16", "data.input_size=32",
    "optim.epochs=1", "data.slices_per_epoch=4", "data.batch_size=4", "data.num_workers=0",
    "data.val_fraction=0", "train.progress=false", "train.tensorboard=false", "train.device=cpu",
]


def tiny_cohort(base: Path) -> Path:
    """6 cases of 64x64x20 voxels at 5x5x9.6 mm in 2 folds (written once per session)."""
    from mpliver.data.phantom import PhantomConfig, write_cohort

    root = base / "mpliver_tiny_cohort"
    if not (root / "dataset.json").exists():
        write_cohort(root, 6, seed=3, config=PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6)),
                     previews=False, num_folds=2)
    return root


def tiny_preset(base: Path) -> Path:
    """The cpu-small preset with TINY_OVERRIDES, frozen into a YAML file once per session, so that a later
    edit of the built-in preset cannot make a finished test run look like a different configuration."""
    from mpliver.training.config import load_config

    path = base / "mpliver_tiny_preset.yaml"
    if not path.exists():
        load_config("cpu-small", TINY_OVERRIDES).save(path)
    return path


def dataset_folds(root: Path) -> dict[int, list[str]]:
    """Fold -> cases, read straight from dataset.json (independently of mpliver's layout code)."""
    out: dict[int, list[str]] = {}
    for case, info in json.loads((root / "dataset.json").read_text())["cases"].items():
        out.setdefault(int(info["fold"]), []).append(case)
    return {f: sorted(c) for f, c in sorted(out.items())}


class CountingTrain:
    """The real `train`, recording the fold of each call (proves that finished folds are skipped)."""

    def __init__(self) -> None:
        self.folds: list[int | None] = []

    def __call__(self, config, data_dir, fold, out_dir, resume=False, on_epoch=None):
        self.folds.append(fold)
        return train_run(config, data_dir, fold, out_dir, resume=resume, on_epoch=on_epoch)
