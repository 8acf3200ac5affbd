"""The cirrhotic liver of the phantom: off by default, its own random stream, the septa and nodules against a
hand computation, and the label left as liver."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from mpliver.data.phantom import PhantomConfig, generate_case, write_cohort
from mpliver.data.phantom.anatomy import render_anatomy, sample_anatomy
from mpliver.data.phantom.cirrhosis import (
    SEPTUM_ANCHOR_TAU_S,
    Cirrhosis,
    _septum_delta,
    apply_cirrhosis,
    sample_cirrhosis,
)
from mpliver.data.phantom.enhancement import sample_kinetics
from mpliver.data.phantom.motion import pv_geometry
from mpliver.data.phantom.shapes import PointGrid
from mpliver.errors import ConfigError

GRID = PhantomConfig(shape=(96, 96, 24), spacing=(3.5, 3.5, 8.0), noise_sd=(0.0, 0.0))


def _cirrhosis(**kw) -> Cirrhosis:
    base = dict(severity=1.0, nodule_mm=10.0, septum_mm=2.0, nodule_sd=4.0, nodule_art_sd={"PV": 0.0},
                septum_hu={"PV": -12.0}, surface_mm=0.0, right_lobe=1.0, left_lobe=1.0, spleen=1.0,
                ascites_mm=0.0, ascites_hu=10.0, layout_seed=0)
    return Cirrhosis(**(base | kw))


def _two_nodules(a, b, z=((1.0, 0.0), (-0.5, 0.0)), **kw) -> Cirrhosis:
    c = _cirrhosis(**kw)
    c.seeds = cKDTree(np.array([a, b], dtype=np.float64))
    c.nodule_z = np.array(z, np.float32)
    return c


def test_septum_and_nodules_by_hand():
    c = _two_nodules([0.0, 0.0, 0.0], [10.0, 0.0, 0.0])
    one_mm = np.array([1.0, 1.0, 1.0])
    points = np.array([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [9.0, 0.0, 0.0], [4.5, 0.0, 0.0]]).T
    hu = c.parenchyma(points, "PV", one_mm)
    # on the wall between the two nodules: the septum's offset; deep in a nodule: that nodule's z x SD
    np.testing.assert_allclose(hu[:3], [-12.0, 4.0, -2.0], atol=1e-5)
    # 0.5 mm from the wall: the voxel [0, 1] mm from the wall overlaps the 2 mm septum over [0, 1]: all septum
    np.testing.assert_allclose(hu[3], -12.0, atol=1e-5)
    # 1.5 mm from the wall the voxel [1, 2] overlaps the septum's half [0, 1] at one point: all nodule 1
    np.testing.assert_allclose(c.parenchyma(np.array([[3.5, 0.0, 0.0]]).T, "PV", one_mm), [4.0], atol=1e-5)
    # off the seed axis the distance to the wall is to the bisecting plane, not half the distance difference
    off_axis = np.array([[4.5, 6.0, 0.0]]).T
    np.testing.assert_allclose(c.parenchyma(off_axis, "PV", one_mm), [-12.0], atol=1e-5)


@pytest.mark.parametrize(("spacing", "direction"), [((1.0, 1.0, 1.0), (1.0, 0.0, 0.0)),
                                                    ((0.7, 0.7, 3.0), (0.0, 0.0, 1.0)),
                                                    ((0.7, 0.7, 3.0), (0.6, 0.0, 0.8)),
                                                    ((2.0, 2.0, 4.0), (1.0, 1.0, 1.0))])
@pytest.mark.parametrize("septum_mm", [0.3, 1.0, 2.5])
def test_septum_keeps_its_width_on_any_grid(spacing, direction, septum_mm):
    """Summed over voxels that tile a line across the wall, the septum's share times the voxel's extent along
    the wall's normal is the septum's width, whatever the grid and the wall's direction."""
    n = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    c = _two_nodules(-10.0 * n, 10.0 * n, z=((0.0, 0.0), (0.0, 0.0)), septum_mm=septum_mm,
                     septum_hu={"PV": 1.0})
    v = float(np.sqrt(((n * np.asarray(spacing)) ** 2).sum()))  # the voxel's extent along n (as shapes.ramp)
    steps = (np.arange(-40, 41) + 0.37) * v
    share = c.parenchyma((steps[:, None] * n).T, "PV", np.asarray(spacing))
    assert float(share.sum()) * v == pytest.approx(septum_mm, rel=1e-5)
    assert share.max() <= 1.0 + 1e-6


def test_parenchyma_needs_place_first():
    c = _cirrhosis()
    with pytest.raises(RuntimeError, match="place"):
        c.parenchyma(np.zeros((3, 1)), "PV", np.ones(3))
    with pytest.raises(RuntimeError, match="place"):
        c.bumps(np.zeros((3, 1)))
    c.place([-20.0, -20.0, -20.0], [20.0, 20.0, 20.0])
    assert c.parenchyma(np.zeros((3, 4)), "PV", np.ones(3)).shape == (4,)


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


def _render(cirrhosis: Cirrhosis | None):
    """The PV anatomy of one case on a small grid, with `cirrhosis` applied (None: healthy)."""
    rng = np.random.default_rng([5, 1])
    kin = sample_kinetics(rng, ("PV",), 0.0)
    anatomy = sample_anatomy(rng, GRID.field_of_view_mm, kin.table, {"PV": 0.0})
    if cirrhosis is not None:
        apply_cirrhosis(anatomy, cirrhosis)
    geom = pv_geometry(GRID)
    return render_anatomy(PointGrid.from_geometry(geom), anatomy, "PV")


def test_nodules_and_septa_change_the_parenchyma_not_the_liver():
    healthy = _render(None)
    # no change of shape (lobe factors 1, no surface bumps, no ascites): only the parenchyma's HU changes
    sick = _render(_cirrhosis(nodule_sd=5.0, septum_hu={"PV": -15.0}, septum_mm=1.0, nodule_mm=6.0))
    np.testing.assert_array_equal(sick[1], healthy[1])  # the liver's occupancy: the label
    np.testing.assert_array_equal(sick[2], healthy[2])  # the structure map
    liver = healthy[1] >= 0.999
    outside = healthy[1] == 0.0
    np.testing.assert_allclose(sick[0][outside], healthy[0][outside], atol=1e-3)  # float32 rounding only
    diff = (sick[0] - healthy[0])[liver & (healthy[2] == 0)]
    assert diff.std() > 3.0 and diff.mean() < 0.0  # nodules spread it; the dark septa pull it down


def test_ascites_fills_the_cavity_fat_around_the_liver_only():
    healthy = _render(None)
    sick = _render(_cirrhosis(nodule_sd=0.0, septum_hu={"PV": 0.0}, ascites_mm=12.0, ascites_hu=8.0))
    fluid = (np.abs(sick[0] - 8.0) < 2.0) & (np.abs(healthy[0] - 8.0) > 20.0)  # became ascites
    assert fluid.sum() > 100
    # such voxels were the cavity's fat (enhancement.py: -110 to -90 HU), or fat at the edge of the
    # fluid-filled gallbladder painted over it; never muscle, kidney, bowel or lung
    was = healthy[0][fluid]
    assert -110.0 <= float(np.median(was)) <= -90.0 and np.mean(was < -85.0) > 0.95
    assert np.all((was < 0.0) & (was > -200.0)), np.unique(np.round(was))[-10:]
    assert np.all(healthy[1][fluid] < 0.5)  # and outside the liver (partial-volume edges at most)
    np.testing.assert_array_equal(sick[2], healthy[2])  # no organ lost its structure code


def test_cirrhotic_case_keeps_its_other_draws():
    healthy = generate_case(2, 4, "HCC", GRID)
    sick = generate_case(2, 4, "HCC", dataclasses.replace(GRID, cirrhosis_prob=1.0))
    assert healthy.cirrhosis is None and sick.cirrhosis is not None
    assert sick.times == healthy.times and sick.noise_sd == healthy.noise_sd
    np.testing.assert_array_equal(sick.motions["ART"], healthy.motions["ART"])
    assert sick.geometries["ART"].same_grid(healthy.geometries["ART"])
    assert (sick.label >= 1).sum() != (healthy.label >= 1).sum()  # the lobes changed


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
    for bad in (1.5, -0.1):
        with pytest.raises(ConfigError, match="cirrhosis_prob"):
            PhantomConfig(cirrhosis_prob=bad)
    assert PhantomConfig().cirrhosis_prob == 0.0
    assert PhantomConfig().randomized().cirrhosis_prob == 0.5


@pytest.mark.parametrize(("args", "share"), [(["--randomize"], 0.5),
                                             (["--randomize", "--cirrhosis", "0"], 0.0),
                                             (["--cirrhosis", "1"], 1.0)])
def test_phantom_cli_cirrhosis_share(tmp_path, args, share):
    from typer.testing import CliRunner

    from mpliver.cli import app

    out = tmp_path / "c"
    common = ["phantom", str(out), "--cases", "2", "--shape", "48,48,12", "--spacing", "7,7,16",
              "--workers", "1", "--no-previews", "--folds", "2"]
    result = CliRunner().invoke(app, common + args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["synthetic"]["config"]["cirrhosis_prob"] == share
    if share == 1.0:
        assert all("cirrhosis" in c for c in meta["cases"].values())


def test_phantom_cli_refuses_a_share_outside_0_1(tmp_path):
    from typer.testing import CliRunner

    from mpliver.cli import app

    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "c"), "--cases", "2", "--cirrhosis", "1.5"])
    assert result.exit_code != 0 and "--cirrhosis" in result.output
    assert "less than or equal to 1" in result.output
