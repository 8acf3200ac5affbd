"""From a `Config` to what training needs: the model, the loss and the data of one fold (`TrainingData`).

This is the one place where training meets `mpliver.models` and `mpliver.data`, so the loop, checkpoints and
DDP code stay independent of them (and testable with tiny stand-ins).

`train` accepts a dataset folder (pre-processed here, into `data.cache` or `DATASET.cache/<tag>`) or a cache
written by `mpliver preprocess`. Folds come from the dataset's `dataset.json`: the test fold is held out, and
a seeded share (`data.val_fraction`) of the remaining cases validates each epoch. The tumour model reads
liver-masked stacks; the liver model (`--task liver`) reads the unmasked PV phase of whole slices, so it
needs a cache of whole slices that keeps every slice (`crop=false`, `keep_slices='all'`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset

from mpliver.data.cache import open_cache, preprocess_dataset, read_manifest
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset, split_cases
from mpliver.data.transforms import AffineAugmentation, IntensityAugmentation
from mpliver.errors import ConfigError, InputError
from mpliver.io.layout import Dataset, check_case_table
from mpliver.models import create_model, segmentation_loss
from mpliver.models.loss import dice_ce_loss
from mpliver.models.registry import resolve_config
from mpliver.runtime import DistInfo, barrier
from mpliver.training.config import Config
from mpliver.training.loop import LossFn


@dataclass
class TrainingData:
    """What the epoch loop needs from the data pipeline.

    `train` and `val` are map-style datasets whose items are dicts with `phases` and `label` (see `loop`).
    `epoch_indices(epoch)` is the epoch's list of training item indices (sampled with the tumour share); it
    must depend on the seed and the epoch only (items may be `(index, augmentation seed)` pairs). `target_fn`
    maps a batch's `label` to the binary target; None when the dataset already yields it.
    """

    train: TorchDataset
    epoch_indices: Callable[[int], Sequence[Any]]
    val: TorchDataset | None = None
    target_fn: Callable[[torch.Tensor], torch.Tensor] | None = None


def preprocess_config_for(config: Config) -> PreprocessConfig:
    """The `PreprocessConfig` a run needs: `data.preprocess`, with whole slices, all kept, for the liver task
    (the liver model segments the whole abdomen slice by slice)."""
    if config.train.task == "liver":
        return replace(config.data.preprocess, crop=False, keep_slices="all")
    return config.data.preprocess


def default_cache_dir(dataset_dir: Path, config: Config) -> Path:
    """`DATASET.cache/<crop|full><size>[-all]-<registration>` beside the dataset (one per input kind)."""
    pp = preprocess_config_for(config)
    tag = f"{'crop' if pp.crop else 'full'}{pp.input_size}{'-all' if pp.keep_slices == 'all' else ''}"
    return dataset_dir.parent / f"{dataset_dir.name}.cache" / f"{tag}-{pp.registration}"


def resolve_cache(config: Config, data_dir: Path, dist_info: DistInfo) -> tuple[Path, Path]:
    """(cache dir, dataset dir) for `data_dir`; pre-processes a dataset folder first (rank 0, others wait)."""
    if (data_dir / "manifest.json").exists():
        cache = data_dir
        manifest = read_manifest(cache)
        dataset_dir = Path(manifest.get("dataset", ""))
        if not (dataset_dir / "dataset.json").exists():
            raise InputError(
                f"the cache's dataset ({dataset_dir}) is gone: its dataset.json holds the folds",
                cache / "manifest.json",
            )
        check_cache_matches(manifest.get("config", {}), config, cache)
        return cache, dataset_dir
    if not (data_dir / "dataset.json").exists():
        raise InputError(
            "neither a dataset (dataset.json) nor a pre-processed cache (manifest.json)", data_dir
        )
    cache = Path(config.data.cache) if config.data.cache else default_cache_dir(data_dir, config)
    if dist_info.is_main:
        # two trainings on one dataset (e.g. two folds at once) share the cache: the second waits, then reuses
        preprocess_dataset(
            data_dir, cache, preprocess_config_for(config), workers=max(1, config.data.num_workers),
            wait_for_lock=None,
        )
    barrier()
    return cache, data_dir


def check_cache_matches(cache_config: dict[str, Any], config: Config, cache: Path) -> None:
    """A given cache must match the run's input size (and hold whole slices, all kept, for the liver task)."""
    size = cache_config.get("input_size")
    if size != config.data.preprocess.input_size:
        raise ConfigError(
            f"the cache holds {size}x{size} slices but data.input_size={config.data.preprocess.input_size}; "
            f"pass data.input_size={size} or pre-process again",
            cache,
        )
    if config.train.task == "liver" and (
        cache_config.get("crop", True) or cache_config.get("keep_slices") != "all"
    ):
        raise ConfigError(
            "the liver model trains on whole slices: pre-process with --no-crop --all-slices "
            "(or pass the dataset folder to train)",
            cache,
        )


def split_train_val(cases: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out round(fraction x n) cases (at least one when fraction > 0 and n > 1), chosen with `seed`."""
    cases = sorted(cases)
    if fraction <= 0 or len(cases) < 2:
        return cases, []
    n_val = min(len(cases) - 1, max(1, int(math.floor(fraction * len(cases) + 0.5))))
    order = np.random.default_rng([seed, 7919]).permutation(len(cases))
    val = sorted(cases[i] for i in order[:n_val])
    return [c for c in cases if c not in val], val


def training_data(config: Config, data_dir: Path, fold: int | None, dist_info: DistInfo) -> tuple[Any, dict]:
    """(TrainingData, metadata for run_info) of `fold` (held-out test fold; None = train on all cases)."""
    cache, dataset_dir = resolve_cache(config, Path(data_dir), dist_info)
    dataset = Dataset(dataset_dir)
    check_case_table(dataset)  # also when training from a cache built earlier
    if fold is None:
        train_cases, test_cases = dataset.cases("Tr"), []
    else:
        train_cases, _, test_cases = split_cases(dataset, fold)
    cached = set(open_cache(cache))
    missing = sorted(set(train_cases) - cached)
    if missing:
        raise InputError(
            f"{len(missing)} training case(s) missing from the cache (first: {missing[0]}); "
            "run `mpliver preprocess` again",
            cache,
        )
    train_cases, val_cases = split_train_val(train_cases, config.data.val_fraction, config.train.seed)
    d, task = config.data, config.train.task
    augmentation = AffineAugmentation(
        max_shift=d.shift, max_rotation_deg=d.rotate_deg, scale_range=(d.scale_min, d.scale_max)
    )
    input_phases = model_input_phases(config)
    train_set = SliceDataset(cache, train_cases, task=task, augmentation=augmentation,
                             mask_jitter=d.mask_jitter,
                             intensity=IntensityAugmentation() if d.intensity_aug else None,
                             faint_lesion_cnr=d.faint_lesion_cnr, input_phases=input_phases,
                             liver_phase=d.liver_phase)
    sampler = train_set.sampler(
        num_samples=d.slices_per_epoch,
        tumor_share=d.tumor_share if task == "tumor" else None,
        seed=config.train.seed,
    )

    def epoch_indices(epoch: int) -> list[tuple[int, int]]:
        sampler.set_epoch(epoch)
        return sampler.indices()

    val_set = None
    if val_cases:
        val_set = SliceDataset(cache, val_cases, task=task, augmentation=None,
                               faint_lesion_cnr=d.faint_lesion_cnr, input_phases=input_phases)
        if d.val_max_slices is not None and len(val_set) > d.val_max_slices:
            keep = np.linspace(0, len(val_set) - 1, d.val_max_slices).round().astype(int)
            val_set = Subset(val_set, sorted(set(keep.tolist())))
    meta = {
        "fold": fold,
        "dataset": str(dataset_dir),
        "cache": str(cache),
        "train_cases": train_cases,
        "val_cases": val_cases,
        "test_cases": test_cases,
        "train_slices": len(train_set),
        "tumor_slices": int(len(train_set.tumor_items)),
        "faint_lesions_ignored": train_set.num_faint,
        "slices_per_epoch": len(sampler),
    }
    return TrainingData(train=train_set, epoch_indices=epoch_indices, val=val_set), meta


def model_input_phases(config: Config) -> int:
    """How many phases, from the front, the configured model reads (`ModelConfig.input_phases`)."""
    try:
        return resolve_config(config.model.name, **config.model.overrides).input_phases
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"model section of the config: {exc}") from None


def build_model(config: Config) -> nn.Module:
    """`create_model(model.name, **model overrides)`; a bad name or option is a ConfigError."""
    try:
        return create_model(config.model.name, **config.model.overrides)
    except ConfigError as exc:
        raise ConfigError(f"model section of the config: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"model section of the config: {exc}") from None


def build_loss(config: Config) -> LossFn:
    """The paper's loss: L_init + L_final (cross-entropy on both) for URIM models, CE otherwise; with
    `train.loss=dice_ce`, a soft Dice term beside every CE term (nnU-Net's loss).

    `train.fg_weight` != 1 weights the foreground class in every CE term (a deviation from the paper, for
    short CPU runs where the tiny tumour share keeps an unweighted model predicting background for long).
    """
    weight = None if config.train.fg_weight == 1.0 else torch.tensor([1.0, float(config.train.fg_weight)])
    if config.train.loss == "dice_ce":
        return dice_ce_loss(weight)
    if weight is None:
        return segmentation_loss

    def weighted_loss(outputs, target):
        return segmentation_loss(outputs, target, weight=weight.to(outputs["logits"].device))

    return weighted_loss


def build_training_data(config: Config, data_dir: str | Path, fold: int | None, dist_info: DistInfo) -> Any:
    """(TrainingData, run metadata) for `fold` of the cache (or dataset) at `data_dir`."""
    return training_data(config, Path(data_dir), fold, dist_info)
