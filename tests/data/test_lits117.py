"""End to end on the real LiTS case 117 (../shared/data/lits117): single phase, and a two-phase copy whose ART
header is shifted by a known offset.

The lits117 crop was stored with an identity affine although its array axis 0 is axial (see the data README),
so these tests pass axial_axis=0 explicitly: detection from the affine would pick axis 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.data.cache import CachedCase, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import read_nifti, write_nifti


def _dataset(shared_data, root, art_offset=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTr" / "LITS117_0000.nii.gz").symlink_to(shared_data / "lits117" / "ct.nii.gz")
    (root / "labelsTr" / "LITS117.nii.gz").symlink_to(shared_data / "lits117" / "label.nii.gz")
    phases = ["PV"]
    if art_offset is not None:
        ct, geom = read_nifti(shared_data / "lits117" / "ct.nii.gz")
        aff = geom.affine.copy()
        aff[:3, 3] += art_offset
        write_nifti(root / "imagesTr" / "LITS117_0001.nii.gz", ct, type(geom)(aff, geom.shape))
        phases.append("ART")
    write_dataset_json(root, phases, 1, {"LITS117": {"tumor_type": "METS", "fold": 0}})
    return root


def test_lits117_single_phase_end_to_end(shared_data, tmp_path):
    ds = _dataset(shared_data, tmp_path / "ds")
    cfg = PreprocessConfig(input_size=192, axial_axis=0, margin_mm=10.0)
    summary = preprocess_dataset(ds, tmp_path / "cache", cfg, workers=1)
    assert summary.built == ["LITS117"]
    cc = CachedCase.open(tmp_path / "cache" / "cases" / "LITS117")
    label, _ = read_nifti(shared_data / "lits117" / "label.nii.gz")
    liver = label >= 1
    # the crop box (in the (axis 1, axis 2) plane) contains the in-plane extent of the labelled liver
    m = cc.mapping
    assert m.orientation.axial_axis == 0 and m.orientation.plane_axes == (1, 2)
    idx = np.argwhere(liver)
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
    ds = _dataset(shared_data, tmp_path / "ds", art_offset=offset)
    cfg = PreprocessConfig(input_size=64, axial_axis=0, registration="liver")
    preprocess_dataset(ds, tmp_path / "cache", cfg, workers=1)
    cc = CachedCase.open(tmp_path / "cache" / "cases" / "LITS117")
    tx = cc.meta["transforms"]["ART"]
    label, geom = read_nifti(shared_data / "lits117" / "label.nii.gz")
    pts = geom.index_to_world(np.argwhere(label >= 1)[::50])
    disp = pts @ np.asarray(tx["matrix"]).T + np.asarray(tx["translation"]) - pts
    assert np.linalg.norm(disp - offset, axis=1).mean() < 1.0
    # registered ART equals PV (the same voxels)
    img = np.asarray(cc.images, np.float32)
    inner = img[:, 5:-5, 8:-8, 8:-8]
    assert np.abs(inner[0] - inner[1]).mean() < 0.02
