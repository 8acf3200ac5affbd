"""Whole-network baselines of the comparison table and the stage-1 liver model, built from shared parts.

Every module of this package is imported here, and importing a model file registers its models: a new
baseline is one new file in this folder.
"""

import importlib
import pkgutil

from mpliver.models.baselines.liver_resunet import LiverResUNet
from mpliver.models.baselines.mc_fcn import MCFCN
from mpliver.models.baselines.mw_unet import MWUNet
from mpliver.models.baselines.nnunet2d import NNUNet2D
from mpliver.models.baselines.pa_resseg import PAResSeg

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MCFCN", "LiverResUNet", "MWUNet", "NNUNet2D", "PAResSeg"]
