"""A lost header (identity affine) is warned about where studies are read (predict and convert), naming the
file; a real header is not. The real LiTS 117 crop in ../shared/data is such a file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mpliver.errors import InputWarning
from mpliver.inference.study import read_volume as read_study_volume
from mpliver.io.checks import warn_identity_affine
from mpliver.io.convert import read_volume as read_convert_volume
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import write_nifti


def test_identity_affine_warns_with_the_file_name_and_a_real_header_does_not(tmp_path):
    ct = np.full((16, 16, 8), 40, np.int16)
    lost, kept = tmp_path / "lost.nii.gz", tmp_path / "kept.nii.gz"
    write_nifti(lost, ct, Geometry.from_spacing(ct.shape, (1.0, 1.0, 1.0)))
    write_nifti(kept, ct, Geometry.from_spacing(ct.shape, (1.0, 1.0, 1.0), origin=(-8.0, 3.0, 100.0)))
    for read in (lambda p: read_study_volume(p, "PV phase"), read_convert_volume):
        with pytest.warns(InputWarning, match=r"lost\.nii\.gz: the header's affine is the identity"):
            read(lost)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read(kept)
    # an in-memory array has no header to lose: the 1 mm grid it gets is not warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_study_volume(ct.astype(np.float32), "PV phase")


def test_warning_is_only_for_the_exact_identity():
    geom = Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.0))
    with pytest.warns(InputWarning):
        assert warn_identity_affine(geom)
    assert not warn_identity_affine(geom.with_axcodes("LPS"))  # the LiTS crop with its true orientation
    assert not warn_identity_affine(Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.5)))


def test_the_real_lits_crop_is_flagged(shared_data):
    with pytest.warns(InputWarning, match="identity"):
        read_study_volume(shared_data / "lits117" / "ct.nii.gz", "PV phase")
