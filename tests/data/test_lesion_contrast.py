"""Lesion contrast (CNR per phase) and the faint lesions it leaves out of training: measured values against
hand-set scenes, the cache's lesion table, and SliceDataset's ignored pixels and tumour slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpliver.data.cache import CachedCase, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset
from mpliver.data.lesion_contrast import LesionContrast, lesion_components, lesion_contrast, robust_sd
from mpliver.errors import ConfigError
from mpliver.io.geometry import Geometry
from mpliver.io.labels import IGNORE_INDEX
from mpliver.io.layout import write_dataset_json
from mpliver.io.nifti import write_nifti

SHAPE, SPACING = (48, 48, 14), (3.5, 3.5, 5.0)


def scene(seed: int = 0, noise: float = 10.0):
    """A liver (label 1) at PV 110 / ART 80 HU with two lesions: A (x < 24) hypo in PV (60) and in ART (50),
    B (x > 24, over more slices) iso in PV (110) and bright in ART (160); Gaussian noise of SD `noise` in
    both phases."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    liver = ((i - 24) / 18.0) ** 2 + ((j - 24) / 16.0) ** 2 + ((k - 7) / 6.0) ** 2 < 1
    a = ((i - 15) ** 2 + (j - 24) ** 2 + ((k - 7) * 1.4) ** 2 < 16) & liver
    b = ((i - 33) ** 2 + (j - 24) ** 2 + ((k - 7) * 0.8) ** 2 < 16) & liver  # taller than A
    label = np.zeros(SHAPE, np.uint8)
    label[liver], label[a], label[b] = 1, 2, 2
    pv = np.full(SHAPE, -90.0, np.float32)
    art = pv.copy()
    pv[liver], art[liver] = 110, 80
    pv[a], art[a] = 60, 50
    pv[b], art[b] = 110, 160
    pv += rng.normal(0, noise, SHAPE).astype(np.float32)
    art += rng.normal(0, noise, SHAPE).astype(np.float32)
    return pv, art, label, a, b


def test_cnr_matches_a_float64_computation_by_hand():
    pv, art, label, a, b = scene()
    rows = lesion_contrast({"PV": pv, "ART": art}, label, SPACING)
    components, n = lesion_components(label)
    assert n == 2 and [r.index for r in rows] == [1, 2]
    by_side = {("A" if components[a][0] == r.index else "B"): r for r in rows}
    assert by_side["A"].voxels == int(a.sum()) and by_side["B"].voxels == int(b.sum())
    # reference in float64: the ring is the parenchyma within 5 mm of the lesion (an ellipsoid of half-axes
    # round(5 / spacing) = (1, 1, 1) voxels, i.e. face neighbours), the spread 1.4826 x MAD of all parenchyma
    from scipy import ndimage
    parenchyma = label == 1
    for side, lesion in (("A", a), ("B", b)):
        ring = ndimage.binary_dilation(lesion, ndimage.generate_binary_structure(3, 1)) & parenchyma
        for name, image in (("PV", pv), ("ART", art)):
            x = image.astype(np.float64)
            p = x[parenchyma]
            sd = 1.4826 * np.median(np.abs(p - np.median(p)))
            expected = (np.median(x[lesion]) - np.median(x[ring])) / sd
            assert by_side[side].cnr[name] == pytest.approx(expected, rel=1e-6)
    # the set contrasts over a noise of 10 HU: A -5 in PV, -3 in ART; B 0 in PV, +8 in ART
    assert by_side["A"].cnr["PV"] == pytest.approx(-5.0, abs=0.6)
    assert abs(by_side["B"].cnr["PV"]) < 0.5 and by_side["B"].cnr["ART"] == pytest.approx(8.0, abs=0.8)
    assert by_side["B"].visible(["PV", "ART"], 1.0) and not by_side["B"].visible(["PV"], 1.0)
    assert by_side["A"].visible(["PV"], 1.0)


def test_robust_sd_of_normal_data_and_edge_cases():
    x = np.random.default_rng(1).normal(0, 7.0, 200_000)
    assert robust_sd(x) == pytest.approx(7.0, rel=0.02)
    assert robust_sd(np.concatenate([x, np.full(2000, 400.0)])) == pytest.approx(7.0, rel=0.03)  # vessels
    assert np.isnan(robust_sd(np.zeros(0)))


def test_tiny_lesions_and_bad_shapes():
    pv, art, label, a, b = scene()
    label = label.copy()
    label[2, 2, 2] = 2  # a one-voxel lesion outside the liver: too small to measure, counts as visible
    rows = lesion_contrast({"PV": pv}, label, SPACING)
    tiny = [r for r in rows if r.voxels == 1]
    assert len(tiny) == 1 and np.isnan(tiny[0].cnr["PV"]) and tiny[0].visible(["PV"], 5.0)
    assert LesionContrast.from_dict(tiny[0].to_dict()).cnr["PV"] != tiny[0].cnr["PV"]  # NaN round-trips
    with pytest.raises(ValueError, match="phase ART: shape"):
        lesion_contrast({"ART": art[:-1]}, label, SPACING)
    assert lesion_contrast({"PV": pv}, (label == 1).astype(np.uint8), SPACING) == []


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("faint")
    geom = Geometry.from_spacing(SHAPE, SPACING)
    cases = {}
    for n in range(2):
        case = f"FAINT_{n:03d}"
        pv, art, label, _, _ = scene(seed=n)
        write_nifti(root / "ds" / "imagesTr" / f"{case}_0000.nii.gz", pv, geom)
        write_nifti(root / "ds" / "imagesTr" / f"{case}_0001.nii.gz", art, geom)
        write_nifti(root / "ds" / "labelsTr" / f"{case}.nii.gz", label, geom)
        cases[case] = {"tumor_type": "HCC", "fold": n}
    write_dataset_json(root / "ds", ["PV", "ART"], 2, cases)
    preprocess_dataset(root / "ds", root / "cache", PreprocessConfig(input_size=32, registration="none"),
                       workers=1)
    return root / "cache"


def test_cache_keeps_the_lesion_map_and_table(cache):
    cc = CachedCase.open(cache / "cases" / "FAINT_000")
    lesions, label = np.asarray(cc.lesions), np.asarray(cc.label)
    assert lesions.shape == label.shape
    np.testing.assert_array_equal(lesions > 0, label == 2)  # both resized by nearest from the same grid
    table = cc.lesion_table
    assert [row["index"] for row in table] == [1, 2]
    for row in table:
        centre = lesions[cc.halo:len(lesions) - cc.halo]
        shows = np.flatnonzero((centre == row["index"]).reshape(len(centre), -1).any(axis=1)).tolist()
        assert row["slices"] == shows and set(shows) <= set(cc.tumor_slices)
    faint_pv = [row for row in table if abs(row["cnr"]["PV"]) < 1]
    assert len(faint_pv) == 1 and faint_pv[0]["cnr"]["ART"] > 5  # lesion B


def _faint_index(cc: CachedCase) -> int:
    return next(row["index"] for row in cc.lesion_table if abs(row["cnr"]["PV"]) < 1)


def test_faint_lesions_are_ignored_only_for_the_phases_the_model_reads(cache):
    cases = ["FAINT_000", "FAINT_001"]
    plain = SliceDataset(cache, cases)
    pv_only = SliceDataset(cache, cases, faint_lesion_cnr=1.0, input_phases=1)
    both = SliceDataset(cache, cases, faint_lesion_cnr=1.0)
    assert plain.num_faint == 0 and pv_only.num_faint == 2 and both.num_faint == 0
    seen_ignored = False
    for i in range(len(plain)):
        ci, s = (int(v) for v in plain.items[i])
        cc = plain.metas[ci]
        region = np.asarray(cc.lesions[s + cc.halo]) == _faint_index(cc)
        y0, y1, y2 = plain[i]["label"].numpy(), pv_only[i]["label"].numpy(), both[i]["label"].numpy()
        np.testing.assert_array_equal(y2, y0)
        np.testing.assert_array_equal(y1[region], IGNORE_INDEX * np.ones(region.sum(), np.int64))
        np.testing.assert_array_equal(y1[~region], y0[~region])
        seen_ignored |= bool(region.any())
        assert torch.equal(plain[i]["phases"], pv_only[i]["phases"])
    assert seen_ignored
    # tumour slices for the sampler: those that still hold a lesion the model is trained on (lesion A)
    for data, keep_faint in ((pv_only, False), (both, True)):
        expected = []
        for i in range(len(plain)):
            ci, s = (int(v) for v in plain.items[i])
            cc = plain.metas[ci]
            centre = np.asarray(cc.lesions[s + cc.halo])
            shown = set(np.unique(centre[centre > 0]).tolist())
            if not keep_faint:
                shown.discard(_faint_index(cc))
            if shown:
                expected.append(i)
        assert data.tumor_items.tolist() == expected
    assert len(pv_only.tumor_items) < len(plain.tumor_items)
    with pytest.raises(ValueError, match="faint_lesion_cnr"):
        SliceDataset(cache, cases, faint_lesion_cnr=-1)


def test_training_data_judges_lesions_on_the_phases_the_model_reads():
    """`training.data.model_input_phases`: 1 for a PV-only model, num_phases for a fused one (which reads the
    first num_phases phases of a longer protocol), so lesion B (faint in PV, bright in ART) is left out only
    for the PV-only model."""
    from mpliver.training.config import load_config
    from mpliver.training.data import model_input_phases

    single = load_config("cpu-small", ["model.name=single_phase", "model.urim=false"])
    fused = load_config("cpu-small", ["model.name=paper"])
    assert model_input_phases(single) == 1 and model_input_phases(fused) == 2
    assert model_input_phases(load_config("cpu-small", ["model.name=paper", "model.num_phases=3"])) == 3


def test_faint_lesion_setting_is_validated():
    from mpliver.training.config import DataConfig
    with pytest.raises(ConfigError, match="faint_lesion_cnr"):
        DataConfig(faint_lesion_cnr=-0.5)
