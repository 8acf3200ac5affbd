"""The lesion spread of the phantom (multifocal cases, lesions at the liver surface): off by default, its own
random stream, and lesions that the capsule cuts with the label kept inside the liver."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from mpliver.data.phantom import PhantomConfig, generate_case, write_cohort
from mpliver.data.phantom.lesions import MULTIFOCAL_COUNT, SUBCAPSULAR_DEPTH, LesionSpread, render_lesion
from mpliver.data.phantom.shapes import PointGrid
from mpliver.errors import ConfigError
from mpliver.io.geometry import Geometry

GRID = PhantomConfig(shape=(96, 96, 24), spacing=(3.5, 3.5, 8.0), noise_sd=(0.0, 0.0))


def _touches_outside(label: np.ndarray) -> bool:
    """Whether a tumour voxel has an in-plane neighbour outside the liver (label 0)."""
    grown = ndimage.binary_dilation(label == 2, structure=np.array([[[0], [1], [0]], [[1], [1], [1]],
                                                                    [[0], [1], [0]]], bool))
    return bool((grown & (label == 0)).any())


def test_off_by_default_draws_nothing():
    assert LesionSpread.draw(0, 1, "METS", 0.0, 0.0) is None
    assert PhantomConfig().multifocal_prob == 0.0 and PhantomConfig().subcapsular_share == 0.0


def test_own_stream_leaves_other_types_unchanged():
    # FNH never presents multifocal: with no surface lesions, the case is the default's bit for bit
    base = generate_case(1, 0, "FNH", GRID)
    spread = generate_case(1, 0, "FNH", dataclasses.replace(GRID, multifocal_prob=1.0))
    for p in base.phases:
        np.testing.assert_array_equal(base.phases[p], spread.phases[p])
    np.testing.assert_array_equal(base.label, spread.label)


def test_multifocal_case_holds_many_lesions():
    config = dataclasses.replace(GRID, multifocal_prob=1.0)
    case = generate_case(3, 0, "METS", config)
    assert MULTIFOCAL_COUNT[0] <= len(case.lesions) <= MULTIFOCAL_COUNT[1]
    assert len(generate_case(3, 0, "METS", GRID).lesions) < len(case.lesions)
    # the lesions stay apart: each is its own component of the label (tiny ones may vanish on this grid)
    components = ndimage.label(case.label == 2)[1]
    assert MULTIFOCAL_COUNT[0] - 2 <= components <= len(case.lesions)


def test_surface_lesions_are_cut_by_the_capsule():
    many = dataclasses.replace(GRID, multifocal_prob=1.0)
    inside = generate_case(3, 0, "METS", many)
    assert not any(lesion.subcapsular for lesion in inside.lesions)
    assert not _touches_outside(inside.label)  # whole inside the liver, with a margin
    surface = generate_case(3, 0, "METS", dataclasses.replace(many, subcapsular_share=1.0))
    assert sum(lesion.subcapsular for lesion in surface.lesions) >= 3
    assert _touches_outside(surface.label)  # reaches the surface
    # each centre lies at its drawn depth below the liver's boundary (± half a voxel), within 0.3-0.9 radii
    liver = np.pad(surface.label >= 1, 1, mode="edge")[:, :, 1:-1]  # the image edge is not the boundary
    depth_mm = ndimage.distance_transform_edt(liver, sampling=GRID.spacing)[1:-1, 1:-1]
    half_voxel = max(GRID.spacing[:2]) / 2
    for lesion in (lesion for lesion in surface.lesions if lesion.subcapsular):
        assert SUBCAPSULAR_DEPTH[0] <= lesion.surface_depth <= SUBCAPSULAR_DEPTH[1]
        idx = np.round(surface.geometries["PV"].world_to_index(lesion.center[None])[0]).astype(int)
        assert abs(depth_mm[tuple(idx)] - lesion.surface_depth * lesion.radius) <= half_voxel + 1e-3


def test_the_capsule_cuts_the_label_in_every_phase(monkeypatch):
    import mpliver.data.phantom.case as case_module

    seen = []
    original = case_module._labels

    def spy(liver, tumour):
        seen.append((liver.copy(), tumour.copy()))
        return original(liver, tumour)

    monkeypatch.setattr(case_module, "_labels", spy)
    config = dataclasses.replace(GRID, subcapsular_share=1.0, phases=("PV", "ART", "EQP"))
    case = generate_case(5, 0, "HCC", config)
    assert len(seen) == 3 and any(lesion.subcapsular for lesion in case.lesions)
    for liver, tumour in seen:  # a tumour voxel is a liver voxel: no lesion beyond the capsule
        assert (tumour > 0.05).any()
        assert np.all(tumour <= liver + 1e-6)


def test_no_surface_lesion_at_the_image_edge():
    # randomised fields of view cut the liver at the image's edge (here case 9 and 20); the edge is not its
    # surface, and no lesion runs off the image in-plane
    config = dataclasses.replace(GRID.randomized(), subcapsular_share=1.0, no_lesion_prob=0.0)
    for index in (9, 20):
        case = generate_case(index, 0, "HCC", config)
        edges = np.concatenate([case.label[[0, -1]].ravel(), case.label[:, [0, -1]].ravel()])
        assert (edges >= 1).any()  # the liver reaches the edge
        assert not (edges == 2).any()


def test_render_clips_to_the_liver_occupancy():
    geom = Geometry(np.diag([1.0, 1.0, 1.0, 1.0]), (21, 21, 21))
    grid = PointGrid.from_geometry(geom)
    case = generate_case(5, 0, "HCC", dataclasses.replace(GRID, subcapsular_share=1.0))
    lesion = next(lesion for lesion in case.lesions if lesion.subcapsular)
    lesion = dataclasses.replace(lesion, center=np.array([10.0, 10.0, 10.0]), radius=6.0)
    liver = np.zeros(geom.shape, np.float32)
    liver[:, :, :10] = 1.0  # the liver ends halfway through the lesion
    liver[:, :, 10] = 0.5
    hu, tumour = np.zeros(geom.shape, np.float32), np.zeros(geom.shape, np.float32)
    render_lesion(grid, lesion, "PV", hu, tumour, liver)
    assert tumour[10, 10, 5] == pytest.approx(1.0)
    assert tumour[10, 10, 10] == pytest.approx(0.5)
    assert not tumour[:, :, 11:].any() and not hu[:, :, 11:].any()
    with pytest.raises(ValueError, match="liver occupancy"):
        render_lesion(grid, lesion, "PV", hu, tumour)


@pytest.mark.parametrize("field", ["multifocal_prob", "subcapsular_share"])
def test_shares_out_of_range_are_refused(field):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(GRID, **{field: 1.5})


@pytest.mark.slow
def test_cohort_records_surface_lesions(tmp_path):
    config = dataclasses.replace(GRID, subcapsular_share=1.0, multifocal_prob=1.0)
    root = write_cohort(tmp_path / "c", 2, seed=0, config=config, previews=False, num_folds=2)
    cases = json.loads((root / "dataset.json").read_text())["cases"]
    assert any(c.get("subcapsular_lesions", 0) >= 1 for c in cases.values())
