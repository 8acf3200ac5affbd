"""A tiny cohort on disk for the evaluate tests: 3 cases, anisotropic spacing, hand-known metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mpliver.io.geometry import Geometry
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import write_nifti

SHAPE = (12, 12, 8)
SPACING = (0.7, 0.9, 2.5)


@dataclass
class Cohort:
    root: Path  # dataset folder (dataset.json with tumour types)
    labels: Path  # root/labelsTr
    preds: Path
    geometry: Geometry


def _maps() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """case -> (reference label map, predicted label map), 0/1/2."""
    liver = np.zeros(SHAPE, np.uint8)
    liver[1:11, 1:11, 1:7] = 1
    out = {}
    # c1 (HCC): a 4x4x4 tumour, predicted one voxel off along i -> Dice 75, VOE 40, RVD 0, ASSD 0.25 mm.
    ref, pred = liver.copy(), liver.copy()
    ref[3:7, 3:7, 2:6] = 2
    pred[4:8, 3:7, 2:6] = 2
    out["c1"] = (ref, pred)
    # c2 (FNH): two 3x3x3 lesions, only the first predicted -> Dice 2*27/81, lesion recall 50.
    ref, pred = liver.copy(), liver.copy()
    ref[1:4, 1:4, 1:4] = 2
    ref[7:10, 7:10, 3:6] = 2
    pred[1:4, 1:4, 1:4] = 2
    out["c2"] = (ref, pred)
    # c3 (cyst): the prediction has liver but no tumour -> Dice 0, VOE 100, RVD -100, ASSD undefined.
    ref = liver.copy()
    ref[5:8, 5:8, 3:5] = 2
    out["c3"] = (ref, liver.copy())
    return out


@pytest.fixture
def cohort(tmp_path: Path) -> Cohort:
    geom = Geometry.from_spacing(SHAPE, SPACING, origin=(-20.0, 10.0, 5.0))
    root = tmp_path / "ds"
    labels, preds = root / "labelsTr", tmp_path / "preds"
    for case, (ref, pred) in _maps().items():
        write_nifti(labels / f"{case}.nii.gz", ref, geom)
        write_nifti(preds / f"{case}.nii.gz", pred, geom)
    write_dataset_json(root, ["PV", "ART"], 3, cases={"c1": {"tumor_type": "HCC", "fold": 0},
                                                     "c2": {"tumor_type": "FNH", "fold": 1},
                                                     "c3": {"tumor_type": "cyst", "fold": 2}})
    return Cohort(root, labels, preds, geom)
