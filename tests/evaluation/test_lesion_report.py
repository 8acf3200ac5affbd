"""The lesion table against hand-computed values: a box lesion of known size, anisotropic spacing."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from mpliver.evaluation.lesion_report import (
    COLUMNS,
    DICOM_COLUMNS,
    RESEARCH_NOTICE,
    SYNTHETIC_NOTICE,
    lesion_table,
    notice_path,
    write_lesion_report,
)
from mpliver.io.geometry import Geometry

SPACING = (0.8, 1.5, 3.0)


def _scene(direction=None):
    geom = Geometry.from_spacing((20, 20, 12), SPACING, origin=(10.0, -20.0, 5.0), direction=direction)
    label = np.zeros(geom.shape, np.uint8)
    label[1:19, 1:19, 1:11] = 1                       # liver
    label[3:8, 4:7, 2:6] = 2                          # box: 5 x 3 voxels in plane, 4 slices
    label[12, 12, 8] = 2                              # two voxels touching by a corner only (26-connected)
    label[13, 13, 9] = 2
    unc = np.zeros(geom.shape, np.float32)
    unc[3:8, 4:7, 2:6] = 0.25
    unc[12, 12, 8], unc[13, 13, 9] = 0.5, 1.0
    return label, unc, geom


def test_box_lesion_hand_computed():
    label, unc, geom = _scene()
    rows = lesion_table(label, unc, geom)
    assert len(rows) == 2 and list(rows[0]) == list(COLUMNS)
    box, pair = rows
    assert box["lesion"] == 1 and pair["lesion"] == 2          # sorted by volume
    assert box["voxels"] == 60
    assert box["volume_ml"] == pytest.approx(60 * 0.8 * 1.5 * 3.0 / 1000.0)  # 0.216 mL
    # edge-to-edge diagonal of the 5x3 voxel box: sqrt((5*0.8)^2 + (3*1.5)^2)
    assert box["longest_axial_diameter_mm"] == pytest.approx(math.sqrt(4.0**2 + 4.5**2))
    assert (box["centroid_i"], box["centroid_j"], box["centroid_k"]) == pytest.approx((5.0, 5.0, 3.5))
    assert (box["centroid_x_mm"], box["centroid_y_mm"], box["centroid_z_mm"]) == pytest.approx(
        (10 + 5 * 0.8, -20 + 5 * 1.5, 5 + 3.5 * 3.0))
    assert box["mean_uncertainty"] == pytest.approx(0.25)
    assert (box["first_slice"], box["last_slice"]) == (2, 5)
    # the corner-touching pair is one lesion; each slice holds one voxel: its diagonal is the diameter
    assert pair["voxels"] == 2 and pair["volume_ml"] == pytest.approx(2 * 3.6 / 1000)
    assert pair["longest_axial_diameter_mm"] == pytest.approx(math.hypot(0.8, 1.5))
    assert pair["mean_uncertainty"] == pytest.approx(0.75)
    assert (pair["first_slice"], pair["last_slice"]) == (8, 9)
    assert box["incomplete"] is False and pair["incomplete"] is False


@pytest.mark.parametrize("where", ["i0", "i_end", "j0", "j_end", "k0", "k_end", "inside"])
def test_incomplete_marks_a_lesion_on_any_face_of_the_image(where):
    geom = Geometry.from_spacing((10, 12, 8), (1.0, 1.0, 2.0))
    label = np.zeros(geom.shape, np.uint8)
    box = {"i0": np.s_[0:3, 4:6, 3:5], "i_end": np.s_[7:10, 4:6, 3:5], "j0": np.s_[4:6, 0:2, 3:5],
           "j_end": np.s_[4:6, 10:12, 3:5], "k0": np.s_[4:6, 4:6, 0:2], "k_end": np.s_[4:6, 4:6, 6:8],
           "inside": np.s_[1:9, 1:11, 1:7]}[where]
    label[box] = 2
    (row,) = lesion_table(label, None, geom)
    assert row["incomplete"] is (where != "inside")


def test_dicom_references_of_first_and_last_image():
    label, unc, geom = _scene()
    refs = [(100 + k, f"1.2.3.{k}") for k in range(geom.shape[2])]
    box, pair = lesion_table(label, unc, geom, dicom_slices=refs)
    assert list(box) == list(COLUMNS + DICOM_COLUMNS)
    assert (box["first_instance_number"], box["first_sop_instance_uid"]) == (102, "1.2.3.2")
    assert (box["last_instance_number"], box["last_sop_instance_uid"]) == (105, "1.2.3.5")
    assert (pair["first_instance_number"], pair["last_sop_instance_uid"]) == (108, "1.2.3.9")
    with pytest.raises(ValueError, match="DICOM images"):
        lesion_table(label, unc, geom, dicom_slices=refs[:-1])


def test_centroid_mm_follows_a_flipped_affine():
    label, unc, geom = _scene(direction=np.diag([-1.0, -1.0, 1.0]))
    box = lesion_table(label, unc, geom)[0]
    expected = geom.affine @ np.array([5.0, 5.0, 3.5, 1.0])
    assert (box["centroid_x_mm"], box["centroid_y_mm"], box["centroid_z_mm"]) == pytest.approx(expected[:3])
    assert box["longest_axial_diameter_mm"] == pytest.approx(math.sqrt(4.0**2 + 4.5**2))


def test_l_shape_diameter_is_the_farthest_corner_pair():
    geom = Geometry.from_spacing((10, 10, 3), (1.0, 2.0, 5.0))
    label = np.zeros(geom.shape, np.uint8)
    label[1:6, 1, 1] = 2   # a row of 5 voxels along i
    label[1, 1:4, 1] = 2   # and a column of 3 along j, sharing voxel (1, 1)
    (row,) = lesion_table(label, None, geom)
    # farthest corners: (5.5, 0.5) and (0.5, 3.5) in index units -> (5 mm, 6 mm) apart
    assert row["longest_axial_diameter_mm"] == pytest.approx(math.hypot(5.0, 6.0))
    assert math.isnan(row["mean_uncertainty"])


@pytest.mark.parametrize("axial", [2, 0])
def test_diameter_of_irregular_blobs_equals_brute_force_over_every_voxel_corner(axial):
    """Random non-convex lesions (holes, concave rows, a sheared affine): the diameter equals the largest
    distance between the corners of ALL the lesion's voxels of one axial slice, in mm (the row-extremes
    shortcut must not change it)."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(5 + axial)
    affine = np.diag([0.7, 1.3, 2.5, 1.0])
    affine[0, 1] = 0.4  # sheared in-plane axes
    if axial == 0:
        affine = affine[[2, 1, 0, 3]][:, [2, 1, 0, 3]]
    geom = Geometry(affine, (24, 24, 24))
    label = np.zeros(geom.shape, np.uint8)
    label[4:20, 4:20, 4:20] = (rng.random((16, 16, 16)) < 0.55) * 2
    rows = lesion_table(label, None, geom, axial_axis=axial)
    plane = [a for a in range(3) if a != axial]
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    components, _ = ndimage.label(label == 2, structure=np.ones((3, 3, 3), bool))
    for index in range(1, components.max() + 1):
        idx = np.argwhere(components == index)
        expected = 0.0
        for k in np.unique(idx[:, axial]):
            pts = idx[idx[:, axial] == k][:, plane].astype(float)
            corners = (pts[:, None, :] + offsets[None]).reshape(-1, 2)
            if len(corners) > 1:
                expected = max(expected, float(pdist(corners @ affine[:3, plane].T).max()))
        match = [r for r in rows if r["voxels"] == len(idx) and r["first_slice"] == idx[:, axial].min()]
        assert any(r["longest_axial_diameter_mm"] == pytest.approx(expected, rel=1e-12) for r in match)


def test_no_tumour_gives_an_empty_table_and_bad_shapes_are_refused():
    geom = Geometry.from_spacing((8, 8, 4), (1.0, 1.0, 1.0))
    assert lesion_table(np.ones(geom.shape, np.uint8), None, geom) == []
    with pytest.raises(ValueError, match="uncertainty shape"):
        lesion_table(np.ones(geom.shape, np.uint8), np.zeros((8, 8, 3)), geom)


@pytest.mark.parametrize("synthetic", [False, True])
def test_report_files_carry_the_notices(tmp_path, synthetic):
    label, unc, geom = _scene()
    rows = lesion_table(label, unc, geom)
    csv_path, json_path = write_lesion_report(tmp_path / "c.csv", tmp_path / "c.json", rows, "CASE",
                                              synthetic=synthetic, meta={"model": "paper"},
                                              liver_volume_ml=2.0)
    lines = csv_path.read_text().splitlines()
    assert not any(line.startswith("#") for line in lines)  # a plain CSV: header first
    records = list(csv.reader(lines))
    assert records[0] == list(COLUMNS) and {len(r) for r in records} == {len(COLUMNS)}
    table = list(csv.DictReader(lines))
    assert len(table) == 2 and float(table[0]["volume_ml"]) == pytest.approx(0.216)
    assert table[0]["incomplete"] == "False"
    sidecar = notice_path(csv_path).read_text()
    assert notice_path(csv_path).name == "c_notice.txt" and RESEARCH_NOTICE in sidecar
    assert (SYNTHETIC_NOTICE in sidecar) is synthetic
    doc = json.loads(json_path.read_text())
    assert doc["liver_volume_ml"] == 2.0 and doc["tumor_volume_ml"] == pytest.approx(0.216 + 0.0072)
    assert doc["tumor_burden_percent"] == pytest.approx(100 * (0.216 + 0.0072) / 2.0)
    assert doc["research_use_only"] is True and doc["synthetic_training"] is synthetic
    assert ("synthetic" in doc["notice"]) is synthetic and doc["num_lesions"] == 2
    assert doc["lesions"][0]["longest_axial_diameter_mm"] == pytest.approx(math.sqrt(36.25))
    assert doc["model"] == "paper"


def test_csv_opens_with_pandas_defaults(tmp_path):
    pandas = pytest.importorskip("pandas")
    label, unc, geom = _scene()
    rows = lesion_table(label, unc, geom, dicom_slices=[(k + 1, f"1.2.{k}") for k in range(geom.shape[2])])
    csv_path, _ = write_lesion_report(tmp_path / "c.csv", tmp_path / "c.json", rows, "CASE")
    frame = pandas.read_csv(csv_path)
    assert list(frame.columns) == list(COLUMNS + DICOM_COLUMNS) and len(frame) == 2
    assert frame["voxels"].tolist() == [60, 2] and frame["incomplete"].dtype == bool
