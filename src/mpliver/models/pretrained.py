"""Load a torchvision ImageNet checkpoint (`resnext50_32x4d` or `resnet50`) into every encoder stream.

Nothing is downloaded: the user passes a state dict or the path of one they already have.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mpliver.errors import ConfigError, InputError
from mpliver.models.backbones.resnext import DEFAULT_BLOCKS
from mpliver.models.config import ModelConfig

TORCHVISION_NAMES = {"resnext50": "resnext50_32x4d", "resnet50": "resnet50"}


def read_state_dict(source: Mapping[str, torch.Tensor] | str | Path) -> dict[str, torch.Tensor]:
    """A state dict as given, or read from a `.pth` file (tensors only, `weights_only=True`)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InputError("checkpoint file not found", path)
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user problem
            raise InputError(f"cannot read a PyTorch state dict: {exc}", path) from exc
        if isinstance(source, Mapping) and isinstance(source.get("state_dict"), Mapping):
            source = source["state_dict"]
    if not isinstance(source, Mapping) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise InputError("a backbone checkpoint must be a mapping of parameter names to tensors")
    return dict(source)


def load_backbone_into(encoders: nn.ModuleList, source: Mapping[str, torch.Tensor] | str | Path,
                       config: ModelConfig) -> None:
    """Strict load of all backbone keys (`fc.*` ignored) into each encoder.

    The first conv of an `ilf` model (N phases x 3 channels) gets the 3-channel kernel tiled N times and
    divided by N, so that N identical phases give the ImageNet response.
    """
    tv_name = TORCHVISION_NAMES.get(config.backbone)
    if tv_name is None:
        raise ConfigError(f"model {config.name!r}: pretrained weights exist for resnext50/resnet50 backbones "
                          f"only, not {config.backbone!r}")
    if config.width != 1.0 or (config.blocks is not None and tuple(config.blocks) != DEFAULT_BLOCKS):
        raise ConfigError(f"model {config.name!r}: pretrained {tv_name} weights need width=1 and the default "
                          f"blocks {DEFAULT_BLOCKS}, got width={config.width} blocks={config.blocks}")
    if config.in_channels != 3:
        raise ConfigError(f"model {config.name!r}: pretrained weights need in_channels=3")
    state = {k: v for k, v in read_state_dict(source).items() if not k.startswith("fc.")}
    expected = encoders[0].state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(f"model {config.name!r}: checkpoint is not a torchvision {tv_name} state dict: "
                          f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected "
                          f"key(s) {unexpected[:3]}")
    tiles = expected["conv1.weight"].shape[1] // 3
    if tiles > 1:  # ilf: phases concatenated at the input
        state["conv1.weight"] = state["conv1.weight"].repeat(1, tiles, 1, 1) / tiles
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"model {config.name!r} ({config.backbone}): {len(wrong)} shape mismatch(es), "
                          f"e.g. {k} is {tuple(state[k].shape)} in the checkpoint, "
                          f"{tuple(expected[k].shape)} in the model; is it a {tv_name} checkpoint?")
    for encoder in encoders:
        encoder.load_state_dict(state, strict=True)
