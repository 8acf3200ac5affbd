"""The three liver-mask sources behind one interface, and the empty-mask error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from helpers.prep_scene import make_case
from mpliver.data.liver_mask import (
    FromFile,
    FromLabel,
    FromModel,
    LiverMaskSource,
    largest_component,
)
from mpliver.errors import InputError
from mpliver.io.geometry import Geometry
from mpliver.io.layout import CaseVolumes
from mpliver.io.nifti import write_nifti


@pytest.fixture()
def case():
    pv, art, label, _, g_pv, g_art = make_case(noise=0.0)
    return CaseVolumes("C1", {"PV": pv, "ART": art}, {"PV": g_pv, "ART": g_art}, label=label)


class WindowThreshold(torch.nn.Module):
    """A stand-in liver network: 'liver' where the windowed centre slice lies in a band around liver HU.

    Logits (N, 2, H, W) from (N, 3, H, W): class 1 gets +10 inside the band, class 0 gets +10 outside.
    """

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.scale = torch.nn.Parameter(torch.ones(()))  # a parameter, so .eval()/.train() matter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x[:, 1]
        inside = ((c > self.lo) & (c < self.hi)).float() * self.scale
        return torch.stack([10 * (1 - inside), 10 * inside], 1)


def test_sources_share_one_interface(case, tmp_path):
    path = tmp_path / "m.nii.gz"
    write_nifti(path, case.label, case.pv_geometry)
    for src in (FromLabel(), FromFile(str(tmp_path / "{case}.nii.gz").replace("{case}", "m")),
                FromModel(WindowThreshold(0, 1))):
        assert isinstance(src, LiverMaskSource)


def test_from_label(case):
    mask = FromLabel()(case)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, case.label >= 1)


def test_from_file_pattern_values_and_resampling(case, tmp_path):
    # TotalSegmentator-style file: liver = 5, something else = 3
    seg = np.where(case.label >= 1, 5, 0).astype(np.uint8)
    seg[:3] = 3
    write_nifti(tmp_path / "C1_seg.nii.gz", seg, case.pv_geometry)
    mask = FromFile(str(tmp_path / "{case}_seg.nii.gz"), values=(5,))(case)
    np.testing.assert_array_equal(mask, case.label >= 1)
    # the same mask on a grid of half the resolution (2x coarser, same extent) is resampled onto PV
    g = case.pv_geometry
    coarse_geom = Geometry.from_spacing((32, 32, 10), tuple(g.spacing * 2),
                                        origin=tuple(g.origin + g.spacing / 2))
    coarse = ndimage.zoom((case.label >= 1).astype(np.float32), 0.5, order=1) > 0.5
    write_nifti(tmp_path / "C1_coarse.nii.gz", coarse.astype(np.uint8), coarse_geom)
    mask2 = FromFile({"C1": tmp_path / "C1_coarse.nii.gz"})(case)
    a, b = mask2, case.label >= 1
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9


def test_from_file_missing_and_empty(case, tmp_path):
    with pytest.raises(InputError, match="not found"):
        FromFile(str(tmp_path / "{case}.nii.gz"))(case)
    write_nifti(tmp_path / "C1.nii.gz", np.zeros(case.label.shape, np.uint8), case.pv_geometry)
    with pytest.raises(InputError) as exc:
        FromFile(str(tmp_path / "{case}.nii.gz"))(case)
    assert "empty" in str(exc.value) and "C1.nii.gz" in str(exc.value) and "\n" not in str(exc.value)


def test_empty_label_mask_is_an_error(case):
    case.label[:] = 0
    with pytest.raises(InputError, match="empty"):
        FromLabel({"C1": "labelsTr/C1.nii.gz"})(case)


def test_from_model_runs_slicewise_and_keeps_the_largest_component(case):
    # liver HU 115 in PV -> windowed (115+70)/250 = 0.74; the band (0.70, 0.78) catches liver only
    # (noise-free scene). A far-away island of liver HU must be removed by the largest-component step.
    pv = case.phases["PV"]
    pv[2:5, 2:5, 2:5] = 115.0
    net = WindowThreshold(0.70, 0.78).train()
    mask = FromModel(net, input_size=64, batch_size=4)(case)
    assert net.training  # the caller's mode is restored
    expected = case.label >= 1
    assert mask.shape == expected.shape
    assert not mask[2:5, 2:5, 2:5].any()
    dice = 2 * (mask & expected).sum() / (mask.sum() + expected.sum())
    assert dice > 0.97


def test_from_model_empty_output_is_an_error(case):
    with pytest.raises(InputError, match="empty"):
        FromModel(WindowThreshold(2.0, 3.0), input_size=32)(case)


def test_largest_component_reference():
    m = np.zeros((10, 10, 10), bool)
    m[1:3, 1:3, 1:3] = True          # 8 voxels
    m[5:9, 5:9, 5:9] = True          # 64 voxels
    m[0, 9, 9] = True
    np.testing.assert_array_equal(largest_component(m), np.pad(np.ones((4, 4, 4), bool), ((5, 1),) * 3))
