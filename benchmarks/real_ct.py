"""The real labelled CT in ../shared/data, read the way the benchmarks score them (one home for their quirks).

The LiTS case 117 crop was stored without orientation (identity affine, 1 mm nominal spacing). Its anatomy
shows the axes. Array axis 2 runs foot to head: its sections are axial (one vertebral body with its canal and
processes, the kidneys, the aorta), and the liver dome lies at high indices. In those sections the spinous
process points to high axis-1 indices (axis 1 runs anterior to posterior) and the transverse processes lie
along axis 0, which runs from the patient's right to left: the liver lies at low axis-0 indices and the aorta
just left of the vertebral body's midline. So the crop is stored LPS, DICOM's order. The data README's "axis
0 looks axial" is wrong: axis-0 sections are sagittal (a row of vertebral bodies). The benchmarks before
2026-12-03 took axis 0 as axial and fed sagittal sections to the networks; for a few hours on 2026-12-03
they used "PLS", which transposes (mirrors) every axial slice, until a review caught it. The spacing stays
unknown and nominal (1 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MPLIVER_SHARED_DATA", ROOT.parent / "shared" / "data"))
LITS117_AXCODES = "LPS"  # i -> patient's left, j -> posterior, k -> superior (read off the anatomy, above)


def lits117(shared: Path = SHARED):
    """(CT in HU as float32, label 0/1 liver/2 tumour, Geometry with the orientation of LITS117_AXCODES)."""
    from mpliver.io.nifti import read_nifti

    ct, geom = read_nifti(shared / "lits117" / "ct.nii.gz", dtype=np.float32)
    label, label_geom = read_nifti(shared / "lits117" / "label.nii.gz")
    if not label_geom.same_grid(geom):
        raise SystemExit(f"{shared / 'lits117'}: label and CT grids differ")
    return ct, label, geom.with_axcodes(LITS117_AXCODES)
