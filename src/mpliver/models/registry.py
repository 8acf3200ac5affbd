"""Named models: a decorator registry of default configs and one build path (as in timm).

| name | what (docs/method.md §3) | URIM by default |
|---|---|---|
| paper | SAM fusion + URIM: the "Ours" / "SAM (Ours)" rows | yes |
| sam, add, mw, pa | feature-level fusion at B2-B5 with eq. 2 feedback | yes |
| ilf | phases concatenated at the input, one stream | yes |
| dlf | one stream and decoder per phase, decision features concatenated | yes |
| single_phase | PV only, one stream | yes |
| mc_fcn, mw_unet, pa_resseg | the comparison baselines | no (refused) |
| liver_resunet | stage-1 liver model, PV only | no (refused) |
| nnunet2d | nnU-Net-style plain 2D U-Net over the centre slices (`bench` reference) | no (refused) |
| nnunet2d_native | the same from nnU-Net's own PlainConvUNet (needs the nnU-Net extra) | no (refused) |

"Every feature-level variant keeps eq. 2 feedback and URIM unless told otherwise" (docs/method.md §3), so the
fusion table compares rows that differ only in the aggregation; the ablation rows are `single_phase`, `add`
and `sam` with `urim=False`, and `paper`. `sam` and `paper` build the same network and differ only in name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from mpliver.errors import ConfigError
from mpliver.models.baselines import MCFCN, LiverResUNet, MWUNet, NNUNet2D, PAResSeg
from mpliver.models.config import ModelConfig, overridable_fields, validate_config
from mpliver.models.network import MultiPhaseNet

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}
_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "multiphase": MultiPhaseNet, "mc_fcn": MCFCN, "mw_unet": MWUNet, "pa_resseg": PAResSeg,
    "liver_resunet": LiverResUNet, "nnunet2d": NNUNet2D,
}


def register_model(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator: register a function returning the default `ModelConfig` of `name`."""

    def wrap(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def default_config(name: str) -> ModelConfig:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    return _REGISTRY[name]()


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The default config of `name` with `overrides` applied and validated."""
    cfg = default_config(name)
    valid = overridable_fields()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"model {name!r}: unknown override(s) {unknown}; valid: {', '.join(valid)}")
    if overrides.get("blocks") is not None:
        overrides["blocks"] = tuple(int(b) for b in overrides["blocks"])
    return validate_config(dataclasses.replace(cfg, **overrides))


def build_model(config: ModelConfig) -> nn.Module:
    """The one build path: a model from a (validated) config; `model.config` is that config."""
    return _BUILDERS[validate_config(config).arch](config)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """A registered model, e.g. `create_model("paper", width=0.25)`. Unknown names or overrides raise a
    ConfigError that lists the valid ones."""
    return build_model(resolve_config(name, **overrides))


def _multiphase(name: str, fusion: str, **kw: Any) -> ModelConfig:
    return ModelConfig(name=name, arch="multiphase", fusion=fusion, **kw)


@register_model("paper")
def _paper() -> ModelConfig:
    return _multiphase("paper", "sam", urim=True)


@register_model("sam")
def _sam() -> ModelConfig:
    return _multiphase("sam", "sam")


@register_model("add")
def _add() -> ModelConfig:
    return _multiphase("add", "add")


@register_model("mw")
def _mw() -> ModelConfig:
    return _multiphase("mw", "mw")


@register_model("pa")
def _pa() -> ModelConfig:
    return _multiphase("pa", "pa")


@register_model("ilf")
def _ilf() -> ModelConfig:
    return _multiphase("ilf", "ilf")


@register_model("dlf")
def _dlf() -> ModelConfig:
    return _multiphase("dlf", "dlf")


@register_model("single_phase")
def _single_phase() -> ModelConfig:
    return _multiphase("single_phase", "single", num_phases=1)


@register_model("mc_fcn")
def _mc_fcn() -> ModelConfig:
    return ModelConfig(name="mc_fcn", arch="mc_fcn", fusion="dlf", urim=False, feedback=False)


@register_model("mw_unet")
def _mw_unet() -> ModelConfig:
    return ModelConfig(name="mw_unet", arch="mw_unet", fusion="mw", backbone="unet", urim=False,
                       feedback=False)


@register_model("pa_resseg")
def _pa_resseg() -> ModelConfig:
    return ModelConfig(name="pa_resseg", arch="pa_resseg", fusion="pa", backbone="resnet50", urim=False,
                       feedback=False)


@register_model("liver_resunet")
def _liver_resunet() -> ModelConfig:
    # width 0.25 of the 64-channel U-Net base: 16..256 channels (2.1M parameters). The liver is an easy
    # target: this width is accurate enough on held-out phantom cases and makes stage 1 much cheaper than
    # width 0.5 (Dice and timings: benchmarks/RESULTS.md, "The liver stage").
    return ModelConfig(name="liver_resunet", arch="liver_resunet", fusion="single", num_phases=1,
                       backbone="unet", width=0.25, urim=False, feedback=False)


@register_model("nnunet2d")
def _nnunet2d() -> ModelConfig:
    # phases enter as input channels (input-level fusion), hence fusion "ilf" and one stream
    return ModelConfig(name="nnunet2d", arch="nnunet2d", fusion="ilf", backbone="unet", urim=False,
                       feedback=False)


@register_model("nnunet2d_native")
def _nnunet2d_native() -> ModelConfig:
    # the same model built from nnU-Net's own PlainConvUNet (needs the nnU-Net extra)
    return ModelConfig(name="nnunet2d_native", arch="nnunet2d", fusion="ilf", backbone="unet", urim=False,
                       feedback=False)
