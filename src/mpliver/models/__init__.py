"""Networks: the two-stream ResNeXt-50 with SAM and URIM, every fusion variant, and the paper's baselines.

Entry points: `create_model(name, **overrides)`, `list_models()`, `build_model(config)`. SAM, LCConv and URIM
are standalone modules that plug into other networks.
"""

from mpliver.models.base import SegmentationModel
from mpliver.models.config import ModelConfig
from mpliver.models.fusion import SAM, AddFusion, MWFusion, PAFusion
from mpliver.models.loss import loss_terms, segmentation_loss
from mpliver.models.registry import (
    build_model,
    create_model,
    default_config,
    list_models,
    register_model,
    resolve_config,
)
from mpliver.models.urim import URIM, LCConv, confidence_map, uncertainty_map

__all__ = [
    "SAM", "URIM", "AddFusion", "LCConv", "MWFusion", "ModelConfig", "PAFusion", "SegmentationModel",
    "build_model", "confidence_map", "create_model", "default_config", "list_models", "loss_terms",
    "register_model", "resolve_config", "segmentation_loss", "uncertainty_map",
]
