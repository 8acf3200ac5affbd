"""The cirrhotic liver of the phantom: off by default, its own random stream, the septa and nodules against a
hand computation, and the label left as liver."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from mpliver.data.phantom import PhantomConfig, generate_case, write_cohort
from mpliver.data.phantom.cirrhosis import SEPTUM_ANCHOR_TAU_S, Cirrhosis, _septum_delta, sample_cirrhosis
from mpliver.errors import ConfigError

GRID = PhantomConfig(shape=(96, 96, 24), spacing=(3.5, 3.5, 8.0), noise_sd=(0.0, 0.0))


def _cirrhosis(**kw) -> Cirrhosis:
    base = dict(severity=1.0, nodule_mm=10.0, septum_mm=2.0, nodule_sd={"PV": 4.0}, nodule_art_sd={"PV": 0.0},
                septum_hu={"PV": -12.0}, surface_mm=0.0, right_lobe=1.0, left_lobe=1.0, spleen=1.0,
                ascites_mm=0.0, ascites_hu=10.0, layout_seed=0)
    return Cirrhosis(**(base | kw))


def test_septum_and_nodules_by_hand():
    c = _cirrhosis()
    c.seeds = cKDTree(np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
    c.nodule_z = np.array([[1.0, 0.0], [-0.5, 0.0]], np.float32)
    points = np.array([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [9.0, 0.0, 0.0], [4.0, 0.0, 0.0]]).T
    hu = c.parenchyma(points, "PV", np.array([1.0, 1.0, 1.0]))
    # on the wall between the two nodules: the septum's offset; deep in a nodule: that nodule's z x SD
    np.testing.assert_allclose(hu[:3], [-12.0, 4.0, -2.0], atol=1e-5)
    # 1 mm from the wall, a 2 mm septum on 1 mm voxels: half septum (ramp 0.5 + (1 - 1) / 1), half nodule 1
    np.testing.assert_allclose(hu[3], 0.5 * 4.0 + 0.5 * -12.0, atol=1e-5)
    # a septum thinner than the voxel fills part of it: 0.1 mm from the wall on 4 mm voxels the ramp gives
    # 0.5 + (1 - 0.1) / 4 = 0.725, times 2 / 4 for the thin septum: 0.3625 septum, the rest nodule 1
    near_wall = c.parenchyma(np.array([[4.9, 0.0, 0.0]]).T, "PV", np.array([4.0, 4.0, 4.0]))
    np.testing.assert_allclose(near_wall, [0.6375 * 4.0 + 0.3625 * -12.0], atol=1e-5)


def test_septum_offset_over_time():
    anchors = {"nc": -5.0, "art": -20.0, "pv": -10.0, "late": 8.0}
    t_art, t_pv, t_late = SEPTUM_ANCHOR_TAU_S
    assert _septum_delta(None, anchors) == -5.0
    assert _septum_delta(t_art, anchors) == -20.0
    assert _septum_delta(t_pv, anchors) == -10.0
    assert _septum_delta(1000.0, anchors) == 8.0  # late enhancement of fibrosis, held after the last anchor
    assert _septum_delta((t_pv + t_late) / 2, anchors) == pytest.approx(-1.0)


def test_sampled_cirrhosis_is_deterministic_and_follows_the_protocol():
    taus = {"ART": 15.0, "PV": 50.0, "EQP": 160.0}
    arterial = {"ART": 1.0, "PV": 0.0, "EQP": 0.0}
    assert sample_cirrhosis(0, 1, 0.0, taus, arterial) is None
    drawn = [sample_cirrhosis(0, i, 1.0, taus, arterial) for i in range(6)]
    again = sample_cirrhosis(0, 3, 1.0, taus, arterial)
    assert drawn[3].describe() == again.describe()
    assert len({c.describe()["nodule_mm"] for c in drawn}) == 6
    for c in drawn:
        assert c.septum_hu["ART"] < 0 < c.septum_hu["EQP"]  # dark septa early, enhancing late
        assert c.nodule_art_sd["PV"] == 0.0 < c.nodule_art_sd["ART"]
        assert c.right_lobe <= 1.0 <= c.left_lobe and c.spleen >= 1.0
    share = np.mean([sample_cirrhosis(1, i, 0.5, taus, arterial) is not None for i in range(200)])
    assert 0.4 < share < 0.6


def test_cirrhotic_case_keeps_its_other_draws_and_labels_the_nodules_liver():
    healthy = generate_case(2, 4, "HCC", GRID)
    sick = generate_case(2, 4, "HCC", dataclasses.replace(GRID, cirrhosis_prob=1.0))
    assert healthy.cirrhosis is None and sick.cirrhosis is not None
    assert sick.times == healthy.times and sick.acquisition == healthy.acquisition
    np.testing.assert_array_equal(sick.motions["ART"], healthy.motions["ART"])
    assert set(np.unique(sick.label)) <= {0, 1, 2}
    assert sick.geometries["PV"].same_grid(healthy.geometries["PV"])
    # the parenchyma is a mosaic: inside the liver, away from its edges, lesions and vessels, the spread grows
    def core(c):
        inside = ndimage.binary_erosion(c.label == 1, iterations=2) & (c.structures["PV"] == 0)
        return c.phases["PV"][inside]

    assert core(healthy).size > 1000 and core(sick).size > 1000
    assert core(sick).std() > core(healthy).std()  # noise-free: only the nodules and septa add spread


def test_cohort_records_cirrhosis(tmp_path):
    grid = PhantomConfig(shape=(48, 48, 12), spacing=(7.0, 7.0, 16.0))
    sick_config = dataclasses.replace(grid, cirrhosis_prob=1.0)
    write_cohort(tmp_path / "sick", 2, seed=0, config=sick_config, previews=False, num_folds=2, workers=1)
    write_cohort(tmp_path / "healthy", 2, seed=0, config=grid, previews=False, num_folds=2, workers=1)
    sick = json.loads((tmp_path / "sick" / "dataset.json").read_text())["cases"]
    healthy = json.loads((tmp_path / "healthy" / "dataset.json").read_text())["cases"]
    assert all(0.3 <= c["cirrhosis"]["severity"] <= 1.0 for c in sick.values())
    assert not any("cirrhosis" in c for c in healthy.values())  # the default dataset.json is unchanged


def test_cirrhosis_setting_is_checked():
    with pytest.raises(ConfigError, match="cirrhosis_prob"):
        PhantomConfig(cirrhosis_prob=1.5)
    assert PhantomConfig().cirrhosis_prob == 0.0
    assert PhantomConfig().randomized().cirrhosis_prob == 0.5
