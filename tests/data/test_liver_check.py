"""The liver-mask plausibility check: hand-built masks with known volume, border contact and body share, the
phantom's own liver (plausible), and the real PV series with TotalSegmentator's liver and a full mask."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.data.liver_check import LIVER_VOLUME_RANGE_ML, body_mask, check_liver
from mpliver.io.geometry import Geometry


def _scene(shape=(100, 100, 40), spacing=(4.0, 4.0, 5.0)):
    """A body (cylinder of 0 HU in -1000 HU air, plus a detached 'table' strip) and its geometry."""
    geom = Geometry.from_spacing(shape, spacing)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = (i - 50) ** 2 + (j - 45) ** 2 < 40**2
    image = np.full(shape, -1000.0, np.float32)
    image[disc] = 0.0
    image[:, 95:98, :] = 200.0  # the table: above -500 HU but not connected to the body
    return image, geom, disc


def test_volume_border_and_body_share_against_hand_counts():
    image, geom, disc = _scene()
    liver = np.zeros(image.shape, bool)
    liver[40:60, 30:50, 10:30] = True  # 20 x 20 x 20 voxels of 80 mm^3 = 640 mL, inside, not on the border
    check = check_liver(liver, image, geom)
    assert check.volume_ml == pytest.approx(20 * 20 * 20 * 80 / 1000)
    assert (check.slices, check.border_slices, check.cut_by_scan) == (20, 0, False)
    assert check.body_share == pytest.approx(8000 / (disc.sum() * 40))
    assert check.ok and check.flags == []


def test_too_small_a_liver_is_flagged_only_when_the_scan_does_not_cut_it():
    image, geom, _ = _scene()
    liver = np.zeros(image.shape, bool)
    liver[45:55, 40:50, 15:25] = True  # 10^3 voxels = 80 mL
    check = check_liver(liver, image, geom)
    assert check.flags == ["volume"] and "below 590 mL" in check.problems[0]
    liver[45:55, 40:50, 0:10] = True  # reaches the first slice: maybe cut by the field of view
    assert check_liver(liver, image, geom).ok


def test_a_mask_of_the_whole_volume_fails_all_three():
    image, geom, _ = _scene()
    check = check_liver(np.ones(image.shape, bool), image, geom)
    assert check.flags == ["volume", "border", "body"]
    assert check.volume_ml == pytest.approx(100 * 100 * 40 * 80 / 1000)
    assert (check.border_slices, check.slices) == (40, 40) and check.body_share == 1.0
    line = check.message("c1", "the bundle's liver model")
    assert "\n" not in line and "c1" in line and "above 2900 mL" in line and "40 of its 40 slices" in line
    assert "100% of the body" in line


def test_border_contact_counts_slices_and_uses_the_threshold():
    image, geom, _ = _scene()
    liver = np.zeros(image.shape, bool)
    liver[40:60, 30:50, 10:30] = True
    liver[95:100, 30:50, 10:21] = True  # touches the last i border on 11 of 20 slices
    check = check_liver(liver, image, geom)
    assert check.border_slices == 11 and check.flags == ["border"]
    liver[95:100, 30:50, 20] = False  # 10 of 20: not more than half
    assert check_liver(liver, image, geom).flags == []


def test_body_is_the_largest_component_above_minus_500():
    image, _, disc = _scene()
    body = body_mask(image)
    assert body.sum() == disc.sum() * image.shape[2]  # the table strip is dropped
    assert not body[:, 95:98].any()


def test_the_volume_range_is_the_cited_one():
    assert LIVER_VOLUME_RANGE_ML == (590.0, 2900.0)


def test_phantom_liver_is_plausible():
    from mpliver.data.phantom import PhantomConfig, generate_case

    case = generate_case(0, 3, "HCC", PhantomConfig())
    check = check_liver(case.label >= 1, case.phases["PV"], case.geometries["PV"])
    assert check.ok, check.problems


def test_real_pv_series_totalsegmentator_liver_passes_and_a_full_mask_fails(shared_data):
    from mpliver.inference.predict import liver_mask_on_grid, read_volume

    folder = shared_data / "totalseg_example"
    pv, geom, _ = read_volume(folder / "pv_dicom", "PV")
    liver = liver_mask_on_grid(folder / "pv_dicom_seg.nii.gz", geom, (5,))
    check = check_liver(liver, pv, geom)
    # 20 slices of 2 mm: the liver is cut by the scan, so its 0.7 L is not "too small"
    assert check.ok and check.cut_by_scan and 500 < check.volume_ml < 900
    assert 0.1 < check.body_share < 0.4
    full = check_liver(np.ones(geom.shape, bool), pv, geom)
    assert full.flags == ["volume", "border", "body"] and full.volume_ml == pytest.approx(10000, rel=0.01)


def test_a_liver_on_the_patients_left_is_flagged_and_a_mirrored_header_turns_it():
    image, geom, _ = _scene()  # RAS axes: array axis 0 (i) grows towards the patient's right
    left = np.zeros(image.shape, bool)
    left[10:30, 30:50, 10:30] = True  # centre i = 19.5, the body's i = 50: 30.5 voxels of 4 mm to the left
    check = check_liver(left, image, geom)
    assert check.flags == ["side"] and "mirrored" in check.problems[0]
    assert check.right_of_body_mm == pytest.approx(-4 * 30.5, abs=0.5)
    # the same array under a header whose i axis points to the patient's left: the liver is on the right
    mirrored = check_liver(left, image, geom.with_axcodes("LAS"))
    assert mirrored.ok and mirrored.right_of_body_mm == pytest.approx(4 * 30.5, abs=0.5)
    near = np.zeros(image.shape, bool)
    near[37:57, 30:50, 10:30] = True  # 3.5 voxels (14 mm) left of centre: within the 20 mm allowed
    assert check_liver(near, image, geom).ok


def test_real_pv_liver_lies_on_the_right_and_a_flipped_header_is_caught(shared_data):
    from mpliver.inference.predict import liver_mask_on_grid, read_volume

    folder = shared_data / "totalseg_example"
    pv, geom, _ = read_volume(folder / "pv_dicom", "PV")
    liver = liver_mask_on_grid(folder / "pv_dicom_seg.nii.gz", geom, (5,))
    assert check_liver(liver, pv, geom).right_of_body_mm > 40
    flip = np.diag([-1.0, 1.0, 1.0, 1.0]) @ geom.affine  # an export that mirrored the left-right axis
    mirrored = check_liver(liver, pv, type(geom)(flip, geom.shape))
    assert "side" in mirrored.flags
