"""Small inputs for the prediction tests: a tiny synthetic case on disk and an (untrained) bundle.

The unit tests check geometry, plumbing and errors, which do not depend on what the weights learned, so the
bundle holds a freshly initialised width-0.25 network with one block per stage (fast on a 2-core CPU). The
end-to-end test in test_predict.py trains its model with `mpliver.training` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mpliver.data.config import PreprocessConfig
from mpliver.inference.bundle import LiverStage, save_bundle
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import write_nifti

TINY_SHAPE = (64, 64, 16)
TINY_SPACING = (5.0, 5.0, 10.0)


def tiny_case(index: int = 0, seed: int = 3, tumor_type: str = "HCC"):
    from mpliver.data.phantom import PhantomConfig, generate_case

    return generate_case(index, seed, tumor_type, PhantomConfig(shape=TINY_SHAPE, spacing=TINY_SPACING))


def write_case_files(folder: Path, case, case_id: str = "CASE") -> dict[str, Path]:
    """PV, ART (on its own grid) and the label as NIfTI files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "PV": write_nifti(folder / f"{case_id}_0000.nii.gz", case.phases["PV"].astype(np.int16),
                          case.geometries["PV"]),
        "ART": write_nifti(folder / f"{case_id}_0001.nii.gz", case.phases["ART"].astype(np.int16),
                           case.geometries["ART"]),
        "label": write_nifti(folder / f"{case_id}_label.nii.gz", case.label, case.geometries["PV"]),
    }
    return paths


def tiny_model(name: str = "paper", seed: int = 0, **overrides):
    from mpliver.models import create_model

    torch.manual_seed(seed)
    kw = {"width": 0.25, "blocks": (1, 1, 1, 1)}
    kw.update(overrides)
    return create_model(name, **kw).eval()


def tiny_bundle(path: Path, liver: bool = False, synthetic: bool = True, phases=("PV", "ART"),
                **model_overrides) -> Path:
    """An untrained bundle at 64 px (liver crop) with optional untrained liver model."""
    stage = None
    if liver:
        from mpliver.models import create_model

        torch.manual_seed(1)
        stage = LiverStage(create_model("liver_resunet", width=0.25).eval(), 64)
    pre = PreprocessConfig(input_size=64, crop=True, registration="liver",
                           liver_mask_source="model" if liver else "file",
                           liver_mask_pattern=None if liver else "(given to predict)")
    return save_bundle(path, tiny_model(**model_overrides), list(phases), pre,
                       {"synthetic": synthetic, "num_cases": 4}, stage)


def shifted(geometry: Geometry, mm) -> Geometry:
    affine = geometry.affine.copy()
    affine[:3, 3] += np.asarray(mm, float)
    return Geometry(affine, geometry.shape)
