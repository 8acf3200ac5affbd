"""Networks: the two-stream ResNeXt-50 with SAM and URIM, every fusion variant, and the paper's baselines.

Entry points: `create_model(name, **overrides)`, `list_models()`, `build_model(config)`. SAM, LCConv and URIM
are standalone modules that plug into other networks.

| name | what (docs/method.md §3) | URIM by default | registered in |
|---|---|---|---|
| paper | SAM fusion + URIM: the "Ours" / "SAM (Ours)" rows | yes | network.py |
| sam, add, mw, pa | feature-level fusion at B2-B5 with eq. 2 feedback | yes | network.py |
| ilf | phases concatenated at the input, one stream | yes | network.py |
| dlf | one stream and decoder per phase, decision features concatenated | yes | network.py |
| single_phase | PV only, one stream | yes | network.py |
| mc_fcn, mw_unet, pa_resseg | the comparison baselines | no (refused) | baselines/<name>.py |
| liver_resunet | stage-1 liver model, PV only | no (refused) | baselines/liver_resunet.py |
| nnunet2d | nnU-Net-style plain 2D U-Net over the centre slices (`bench` ref.) | no | baselines/nnunet2d.py |
| nnunet2d_native | the same from nnU-Net's PlainConvUNet (nnU-Net extra) | no | baselines/nnunet2d.py |

Adding a baseline is one new file, `baselines/<name>.py`: `mpliver.models.baselines` imports every module
of its folder, and importing a model file registers it. In that file:
1. a `SegmentationModel` subclass decorated with `@register_arch("<arch>")`: `forward(phases)` starts with
   `self.check_inputs(phases)` and returns `{"logits": ...}`; set `supports_urim` / `supports_shared_encoder`
   if it has them (the registry refuses those options otherwise) and override the classmethod `check_config`
   to refuse what it cannot build (`raise config_error(config, "...")`); mix in `PretrainedBackboneMixin` if
   its ResNet streams live in `self.encoders`;
2. one or more `@register_model("<name>")` functions returning its default `ModelConfig(name=..., arch=...)`.
A model that reads the PV phase only uses `fusion="single"` (`ModelConfig.input_phases` is then 1). Saved
configs store `arch`, so a bundle rebuilds the model through the same class (tests/models/test_registry.py
builds a model from a temporary module this way).
"""

from mpliver.models import baselines, network  # noqa: F401 - importing the model files registers them
from mpliver.models.base import PretrainedBackboneMixin, SegmentationModel
from mpliver.models.config import ModelConfig, config_error
from mpliver.models.fusion import SAM, AddFusion, MWFusion, PAFusion
from mpliver.models.loss import loss_terms, segmentation_loss
from mpliver.models.registry import (
    build_model,
    create_model,
    default_config,
    list_archs,
    list_models,
    register_arch,
    register_model,
    resolve_config,
    validate_config,
)
from mpliver.models.urim import URIM, LCConv, confidence_map, uncertainty_map

__all__ = [
    "SAM", "URIM", "AddFusion", "LCConv", "MWFusion", "ModelConfig", "PAFusion", "PretrainedBackboneMixin",
    "SegmentationModel", "build_model", "confidence_map", "config_error", "create_model", "default_config",
    "list_archs", "list_models", "loss_terms", "register_arch", "register_model", "resolve_config",
    "segmentation_loss", "uncertainty_map", "validate_config",
]
