"""Whole-network baselines of the comparison table and the stage-1 liver model, built from shared parts."""

from mpliver.models.baselines.liver_resunet import LiverResUNet
from mpliver.models.baselines.mc_fcn import MCFCN
from mpliver.models.baselines.mw_unet import MWUNet
from mpliver.models.baselines.nnunet2d import NNUNet2D
from mpliver.models.baselines.pa_resseg import PAResSeg

__all__ = ["MCFCN", "LiverResUNet", "MWUNet", "NNUNet2D", "PAResSeg"]
