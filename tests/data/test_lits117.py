"""End to end on the real LiTS case 117 (../shared/data/lits117): single phase, and a two-phase copy whose ART
header is shifted by a known offset.

The lits117 crop was stored without orientation (identity affine). The dataset written here carries the
orientation read off its anatomy (benchmarks/real_ct.py: LPS, array axis 2 axial, 0 to the patient's left,
1 to posterior), so slice detection works from the affine, as for any correctly stored study.
"""

from __future__ import annotations

import numpy as np
import pytest
from real_ct import lits117  # benchmarks/: the one home of the crop's orientation

from mpliver.data.cache import CachedCase, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import write_nifti


def _dataset(shared_data, root, art_offset=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    ct, label, geom = lits117(shared_data)
    write_nifti(root / "imagesTr" / "LITS117_0000.nii.gz", ct.astype(np.int16), geom)
    write_nifti(root / "labelsTr" / "LITS117.nii.gz", label, geom)
    phases = ["PV"]
    if art_offset is not None:
        aff = geom.affine.copy()
        aff[:3, 3] += art_offset
        shifted = type(geom)(aff, geom.shape)
        write_nifti(root / "imagesTr" / "LITS117_0001.nii.gz", ct.astype(np.int16), shifted)
        phases.append("ART")
    write_dataset_json(root, phases, 1, {"LITS117": {"tumor_type": "METS", "fold": 0}})
    return root, label, geom


def test_lits117_single_phase_end_to_end(shared_data, tmp_path):
    ds, label, _ = _dataset(shared_data, tmp_path / "ds")
    cfg = PreprocessConfig(input_size=192, margin_mm=10.0)
    summary = preprocess_dataset(ds, tmp_path / "cache", cfg, workers=1)
    assert summary.built == ["LITS117"]
    cc = CachedCase.open(tmp_path / "cache" / "cases" / "LITS117")
    liver = label >= 1
    # slices come from array axis 2 (axial); in-plane H runs towards the patient's right (axis 0 reversed)
    # and W towards anterior (axis 1 reversed)
    m = cc.mapping
    assert m.orientation.axial_axis == 2 and m.orientation.plane_axes == (0, 1)
    assert m.orientation.plane_flips == (True, True)
    idx = np.argwhere(m.orientation.to_slices(liver))  # (k, h, w)
    (h0, w0), (nh, nw) = m.box.start, m.box.size
    assert h0 <= idx[:, 1].min() and h0 + nh > idx[:, 1].max()
    assert w0 <= idx[:, 2].min() and w0 + nw > idx[:, 2].max()
    # every axial slice with liver is a centre slice
    assert set(np.unique(idx[:, 0])) <= set(m.centre_slices)
    # and the cached label maps back exactly onto the original label
    back = m.paste_back(np.asarray(cc.label[cc.halo:-cc.halo]), mode="nearest")
    np.testing.assert_array_equal(back, label)
    img = np.asarray(cc.images)
    assert img.shape == (1, len(m.centre_slices) + 2, 192, 192) and 0 <= img.min() and img.max() <= 1


@pytest.mark.slow
def test_lits117_liver_registration_recovers_a_header_shift(shared_data, tmp_path):
    offset = np.array([2.0, -3.0, 4.0])  # mm; anatomy at p in PV appears at p + offset in this ART copy
    ds, label, geom = _dataset(shared_data, tmp_path / "ds", art_offset=offset)
    cfg = PreprocessConfig(input_size=64, registration="liver")
    preprocess_dataset(ds, tmp_path / "cache", cfg, workers=1)
    cc = CachedCase.open(tmp_path / "cache" / "cases" / "LITS117")
    tx = cc.meta["transforms"]["ART"]
    pts = geom.index_to_world(np.argwhere(label >= 1)[::50])
    disp = pts @ np.asarray(tx["matrix"]).T + np.asarray(tx["translation"]) - pts
    assert np.linalg.norm(disp - offset, axis=1).mean() < 1.0
    # registered ART equals PV (the same voxels)
    img = np.asarray(cc.images, np.float32)
    inner = img[:, 5:-5, 8:-8, 8:-8]
    assert np.abs(inner[0] - inner[1]).mean() < 0.02
