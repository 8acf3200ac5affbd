"""Optional extras: whether they are installed, and the one line that says how to install them.

nnU-Net v2 (`mpliver[nnunet]`): nnunetv2 needs dynamic-network-architectures, which needs timm, which needs
torchvision; mpliver uses neither timm nor torchvision (nor does nnU-Net's plain and residual U-Nets), so the
five nnU-Net packages are installed without their dependencies after the extra, which holds the rest.
"""

from __future__ import annotations

import importlib.util

from mpliver.errors import MpliverError

NNUNET_PACKAGES = ("nnunetv2==2.8.1 acvl-utils==0.2.6 dynamic-network-architectures==0.4.4 "
                   "batchgenerators==0.25.5 batchgeneratorsv2==0.3.6")
NNUNET_INSTALL = f"pip install 'mpliver[nnunet]' && pip install --no-deps {NNUNET_PACKAGES}"


class MissingExtraError(MpliverError):
    """An optional extra that a command needs is not installed."""


def nnunet_available() -> bool:
    """True when nnunetv2 and dynamic_network_architectures can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("nnunetv2", "dynamic_network_architectures"))


def require_nnunet(what: str) -> None:
    """Raise a one-line MissingExtraError saying how to install nnU-Net v2 when it is missing."""
    if not nnunet_available():
        raise MissingExtraError(f"{what} needs nnU-Net v2, which is not installed; install it with: "
                                f"{NNUNET_INSTALL}")
