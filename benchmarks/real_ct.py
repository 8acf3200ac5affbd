"""The real labelled CT in ../shared/data, read the way the benchmarks score them (one home for their quirks).

The LiTS case 117 crop was stored without orientation (identity affine, 1 mm nominal spacing). Its anatomy
shows the axes: array axis 2 runs foot to head (axial sections along it show one vertebral body, the kidneys
and the aorta; the liver dome lies at high indices), axis 0 runs anterior to posterior (the spine at high
indices) and axis 1 from the patient's right to left (the liver at low indices). The data README's "axis 0
looks axial" is wrong: axis 0 sections are sagittal (a row of vertebral bodies). Scoring the crop with axis 0
as axial, as the benchmarks did before 2026-12-03, fed sagittal sections to the networks. The spacing stays
unknown and nominal (1 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MPLIVER_SHARED_DATA", ROOT.parent / "shared" / "data"))
LITS117_AXCODES = "PLS"  # i -> posterior, j -> patient's left, k -> superior (read off the anatomy, above)


def lits117(shared: Path = SHARED):
    """(CT in HU as float32, label 0/1 liver/2 tumour, Geometry with the orientation of LITS117_AXCODES)."""
    from mpliver.io.nifti import read_nifti

    ct, geom = read_nifti(shared / "lits117" / "ct.nii.gz", dtype=np.float32)
    label, label_geom = read_nifti(shared / "lits117" / "label.nii.gz")
    if not label_geom.same_grid(geom):
        raise SystemExit(f"{shared / 'lits117'}: label and CT grids differ")
    return ct, label, geom.with_axcodes(LITS117_AXCODES)
