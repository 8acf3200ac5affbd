"""`SegmentationModel`: what every model shares: its config, the input contract, the output dict and the hooks
the registry reads (`supports_urim`, `supports_shared_encoder`, `check_config`); `PretrainedBackboneMixin`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mpliver.errors import InputError
from mpliver.models.config import ModelConfig
from mpliver.models.pretrained import load_backbone_into

INPUT_MULTIPLE = 32  # the deepest ResNet stage has stride 32


class SegmentationModel(nn.Module):
    """Base of every registered model.

    `model(phases)` takes a sequence of tensors, one per phase, each (N, in_channels, H, W) with PV first, and
    returns a dict with `logits` (N, K, H, W). Models with URIM also return `initial` (N, K, H, W) and
    `confidence` (N, 1, h, w) at the decoder's resolution. Single-input models (`single_phase`,
    `liver_resunet`) accept a longer sequence and use its first tensor (PV) only, so that a data loader can
    feed every model the same batch.

    A subclass registered with `register_arch` states what its architecture accepts: `supports_urim` and
    `supports_shared_encoder` (the registry refuses those options otherwise) and `check_config` for its own
    constraints.
    """

    supports_urim: ClassVar[bool] = False
    supports_shared_encoder: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """Raise a ConfigError (`config_error`) for a config this architecture cannot build; the generic
        checks have passed. Nothing to check by default."""

    def check_inputs(self, phases: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Validate the phase list; returns the tensors the model uses."""
        name, cfg = self.config.name, self.config
        if isinstance(phases, torch.Tensor) or not isinstance(phases, Sequence):
            raise InputError(f"model {name!r} takes a sequence of tensors, one per phase (PV first), "
                             f"got {type(phases).__name__}")
        if cfg.input_phases == 1:
            if len(phases) < 1:
                raise InputError(f"model {name!r} needs the PV phase, got an empty sequence")
            phases = phases[:1]
        elif len(phases) != cfg.num_phases:
            raise InputError(f"model {name!r} takes {cfg.num_phases} phases, got {len(phases)}")
        first = phases[0]
        for i, x in enumerate(phases):
            if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != cfg.in_channels:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise InputError(f"model {name!r}: phase {i} must be (N, {cfg.in_channels}, H, W), "
                                 f"got {shape}")
            if x.shape != first.shape:
                raise InputError(f"model {name!r}: phase {i} has shape {tuple(x.shape)}, "
                                 f"phase 0 has {tuple(first.shape)}")
        h, w = first.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE or h == 0 or w == 0:
            raise InputError(f"model {name!r}: input size {h}x{w} must be a positive multiple of "
                             f"{INPUT_MULTIPLE} in both directions")
        return list(phases)


class PretrainedBackboneMixin:
    """`load_pretrained_backbone` for models whose streams live in `self.encoders`."""

    def load_pretrained_backbone(self, state_dict_or_path: Mapping[str, torch.Tensor] | str | Path) -> None:
        """Load a torchvision resnext50_32x4d / resnet50 state dict into each stream (strict, no fc)."""
        load_backbone_into(self.encoders, state_dict_or_path, self.config)


def upsample_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to the input size (no-op when already there)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
