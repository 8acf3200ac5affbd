"""From a `Config` to the objects training needs: the model, the loss and the data (`TrainingData`).

This is the one place where the engine meets `mpliver.models` and `mpliver.data`, so the loop, checkpoints and
DDP code stay independent of them (and testable with tiny stand-ins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mpliver.engine.config import Config
from mpliver.engine.distributed import DistInfo
from mpliver.engine.loop import LossFn
from mpliver.errors import ConfigError


def build_model(config: Config) -> nn.Module:
    """`create_model(model.name, **model overrides)`; a bad name or option is a ConfigError."""
    from mpliver.models import create_model

    try:
        return create_model(config.model.name, **config.model.overrides)
    except ConfigError as exc:
        raise ConfigError(f"model section of the config: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"model section of the config: {exc}") from None


def build_loss(config: Config) -> LossFn:
    """The paper's loss: L_init + L_final (cross-entropy on both) for URIM models, CE otherwise.

    `train.fg_weight` != 1 weights the foreground class in every CE term (a deviation from the paper, for
    short CPU runs where the tiny tumour share keeps an unweighted model predicting background for long).
    """
    import torch

    from mpliver.models import segmentation_loss

    if config.train.fg_weight == 1.0:
        return segmentation_loss
    weight = torch.tensor([1.0, float(config.train.fg_weight)])

    def weighted_loss(outputs, target):
        return segmentation_loss(outputs, target, weight=weight.to(outputs["logits"].device))

    return weighted_loss


def build_training_data(config: Config, data_dir: str | Path, fold: int | None, dist_info: DistInfo) -> Any:
    """(TrainingData, run metadata) for `fold` of the cache (or dataset) at `data_dir`."""
    from mpliver.engine.data import training_data

    return training_data(config, Path(data_dir), fold, dist_info)
