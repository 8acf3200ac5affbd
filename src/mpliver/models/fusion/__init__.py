"""Feature-level fusion modules. Each maps N phase feature maps to (F_aggr, [modulated F_p]) (eqs. 1-2)."""

from __future__ import annotations

from torch import nn

from mpliver.models.fusion.add import AddFusion
from mpliver.models.fusion.mw import MWFusion
from mpliver.models.fusion.pa import PAFusion
from mpliver.models.fusion.sam import SAM

FUSIONS: dict[str, type[nn.Module]] = {"sam": SAM, "add": AddFusion, "mw": MWFusion, "pa": PAFusion}


def make_fusion(kind: str, channels: int, num_phases: int) -> nn.Module:
    """A fusion module of the given kind (`sam`, `add`, `mw`, `pa`)."""
    return FUSIONS[kind](channels, num_phases)


__all__ = ["FUSIONS", "SAM", "AddFusion", "MWFusion", "PAFusion", "make_fusion"]
