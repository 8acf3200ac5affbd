"""A lost header (1 mm voxels along the world axes at or around the origin: what conversions without geometry
write) is warned about where studies are read (predict, convert, and a dataset's cases for pre-processing and
training), naming the file; a real header is not.
The real LiTS 117 crop in ../shared/data is such a file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mpliver.errors import InputWarning
from mpliver.inference.study import read_volume as read_study_volume
from mpliver.io.checks import warn_lost_header
from mpliver.io.convert import read_volume as read_convert_volume
from mpliver.io.geometry import Geometry
from mpliver.io.layout import Dataset, write_dataset_json
from mpliver.io.nifti import write_nifti


def test_lost_header_warns_with_the_file_name_and_a_real_header_does_not(tmp_path):
    ct = np.full((16, 16, 8), 40, np.int16)
    lost, kept = tmp_path / "lost.nii.gz", tmp_path / "kept.nii.gz"
    write_nifti(lost, ct, Geometry.from_spacing(ct.shape, (1.0, 1.0, 1.0)))
    write_nifti(kept, ct, Geometry.from_spacing(ct.shape, (1.0, 1.0, 1.0), origin=(-8.0, 3.0, 100.0)))
    for read in (lambda p: read_study_volume(p, "PV phase"), read_convert_volume):
        with pytest.warns(InputWarning, match=r"lost\.nii\.gz: the header looks lost"):
            read(lost)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read(kept)
    # an in-memory array has no header to lose: the 1 mm grid it gets is not warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_study_volume(ct.astype(np.float32), "PV phase")


@pytest.mark.parametrize("name, affine", [
    ("identity", np.eye(4)),
    ("nibabel without sform/qform: diag(-1, 1, 1), centred", np.array(
        [[-1.0, 0, 0, 1.5], [0, 1.0, 0, -1.5], [0, 0, 1.0, -1.5], [0, 0, 0, 1]])),
    ("SimpleITK's LPS default at 0", np.diag([-1.0, -1.0, 1.0, 1.0])),
    ("a permuted identity", np.array([[0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])),
])
def test_headers_that_conversions_write_without_geometry_are_warned(name, affine):
    with pytest.warns(InputWarning):
        assert warn_lost_header(Geometry(affine, (4, 4, 4)))


def test_real_looking_headers_are_not_warned():
    geom = Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_lost_header(Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.5)))  # 1.5 mm slices
        assert not warn_lost_header(Geometry.from_spacing((4, 4, 4), (0.98, 0.98, 2.0)))
        assert not warn_lost_header(Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.0), (-180.0, 20.0, 900.0)))
        theta = 0.2
        rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        assert not warn_lost_header(Geometry.from_spacing((4, 4, 4), (1.0, 1.0, 1.0), direction=rot))
    with pytest.warns(InputWarning):  # the LiTS crop's identity, whatever codes it is given, stays at 0
        assert warn_lost_header(geom.with_axcodes("LPS"))


def test_the_real_lits_crop_is_flagged(shared_data):
    with pytest.warns(InputWarning, match="header looks lost"):
        read_study_volume(shared_data / "lits117" / "ct.nii.gz", "PV phase")


def test_a_datasets_case_with_a_lost_header_is_warned_per_phase_file(tmp_path):
    """`Dataset.load_case` (what preprocess and train read) warns as predict does: here the ART file lost its
    header and the PV file kept it."""
    ct = np.full((16, 16, 8), 40, np.int16)
    ct[0] = -1000
    real = Geometry.from_spacing(ct.shape, (0.8, 0.8, 2.5), origin=(-8.0, 3.0, 100.0))
    write_nifti(tmp_path / "imagesTr" / "c1_0000.nii.gz", ct, real)
    write_nifti(tmp_path / "imagesTr" / "c1_0001.nii.gz", ct, Geometry(np.eye(4), ct.shape))
    label = np.zeros(ct.shape, np.uint8)
    label[4:8, 4:8, 2:5] = 1
    write_nifti(tmp_path / "labelsTr" / "c1.nii.gz", label, real)
    write_dataset_json(tmp_path, ["PV", "ART"], 1, {"c1": {"tumor_type": "HCC", "fold": 0}})
    with pytest.warns(InputWarning, match=r"c1_0001\.nii\.gz: the header looks lost") as caught:
        Dataset(tmp_path).load_case("c1")
    assert [str(w.message).split(":")[0] for w in caught if issubclass(w.category, InputWarning)] == [
        str(tmp_path / "imagesTr" / "c1_0001.nii.gz")]
