"""Case layout: dataset.json validation, per-case file checks, tumour type spelling, HU / grid checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpliver.errors import DatasetError, InputError
from mpliver.io.checks import check_finite, check_hu, check_same_grid
from mpliver.io.geometry import Geometry
from mpliver.io.layout import Dataset, check_label_values, normalize_tumor_type, write_dataset_json
from mpliver.io.nifti import write_nifti

GOOD = {
    "channel_names": {"0": "PV", "1": "ART"},
    "labels": {"background": 0, "liver": 1, "tumor": 2},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}


def _meta(root, **changes):
    meta = {**GOOD, **changes}
    for k, v in changes.items():
        if v is None:
            del meta[k]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _case(root, case="c1", art=True, label_geom=None):
    g = Geometry.from_spacing((8, 8, 4), (1.0, 1.0, 2.0))
    ct = np.full(g.shape, 50.0, np.float32)
    ct[0] = -1000
    write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", ct, g)
    if art:
        art_ct = np.full((9, 8, 4), 60.0, np.float32)
        art_ct[0] = -1000
        write_nifti(
            root / "imagesTr" / f"{case}_0001.nii.gz",
            art_ct,
            Geometry.from_spacing((9, 8, 4), (1.0, 1.0, 2.0), origin=(2, 0, 0)),
        )  # ART: own grid is fine
    lab = np.zeros(g.shape, np.uint8)
    lab[2:5, 2:5, 1:3] = 1
    write_nifti(root / "labelsTr" / f"{case}.nii.gz", lab, label_geom or g)


def test_valid_dataset(tmp_path):
    root = _meta(tmp_path / "ds", cases={"c1": {"tumor_type": "HCC", "fold": 3}})
    _case(root)
    ds = Dataset(root)
    assert ds.phases == ["PV", "ART"] and ds.validate(check_values=True) == ["c1"]
    assert ds.tumor_type("c1") == "HCC" and ds.folds() == {3: ["c1"]}
    vols = ds.load_case("c1")
    assert vols.phases["ART"].shape == (9, 8, 4) and vols.label.dtype == np.uint8


@pytest.mark.parametrize("key", ["channel_names", "labels", "file_ending"])
def test_missing_key(tmp_path, key):
    root = _meta(tmp_path / "ds", **{key: None})
    with pytest.raises(DatasetError, match=f"missing key '{key}'") as err:
        Dataset(root)
    assert "dataset.json" in str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"channel_names": {"0": "", "1": "PV"}}, "phase names must be non-empty"),
        ({"channel_names": {"0": "PV", "2": "ART"}}, "channel_names must map"),
        ({"channel_names": {"0": "PV", "1": "PV"}}, "duplicate phase names"),
        ({"labels": {"background": 0, "tumour": 2}}, "labels must contain"),
        ({"file_ending": ".nrrd"}, "file_ending"),
        ({"cases": {"c1": {"fold": -1}}}, "fold must be"),
    ],
)
def test_bad_meta(tmp_path, changes, message):
    with pytest.raises(DatasetError, match=message):
        Dataset(_meta(tmp_path / "ds", **changes))


def test_no_json_or_broken_json(tmp_path):
    with pytest.raises(DatasetError, match="no dataset.json"):
        Dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="invalid JSON"):
        Dataset(tmp_path)


def test_missing_phase_and_label_off_grid(tmp_path):
    root = _meta(tmp_path / "a")
    _case(root, art=False)
    with pytest.raises(DatasetError, match="missing phase ART") as err:
        Dataset(root).validate()
    assert "c1_0001.nii.gz" in str(err.value)
    root = _meta(tmp_path / "b")
    _case(root, label_geom=Geometry.from_spacing((8, 8, 4), (1.0, 1.0, 2.0), origin=(0, 0, 1.0)))
    with pytest.raises(InputError, match="not on the grid of the PV phase") as err:
        Dataset(root).validate()
    assert "c1.nii.gz" in str(err.value)


def test_missing_label_and_bad_label_values(tmp_path):
    root = _meta(tmp_path / "ds")
    _case(root)
    (root / "labelsTr" / "c1.nii.gz").unlink()
    with pytest.raises(DatasetError, match="has no label"):
        Dataset(root).validate()
    with pytest.raises(DatasetError, match=r"0/1/2, found \[5\]"):
        check_label_values(np.array([0, 1, 5]))
    with pytest.raises(DatasetError, match="non-integer"):
        check_label_values(np.array([0.0, 0.5]))


def test_write_dataset_json_and_misspelt_type(tmp_path):
    write_dataset_json(tmp_path, ["PV", "ART"], 1, cases={"c1": {"tumor_type": "hcc"}})
    _case(tmp_path)
    with pytest.raises(DatasetError, match="misspelt"):
        Dataset(tmp_path).validate()
    with pytest.raises(ValueError):
        write_dataset_json(tmp_path, ["PV", "PV"], 1)  # any primary phase may come first, but no repeats


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ("hcc", "HCC"),
        ("Cyst", "cyst"),
        ("fnh", "FNH"),
        ("METS", "METS"),
        ("haemangioma", "HEM"),
        ("metastasis", "METS"),
        (" HEM ", "HEM"),
    ],
)
def test_tumor_type_normalised(raw, canonical):
    assert normalize_tumor_type(raw) == canonical


def test_unknown_tumor_type():
    with pytest.raises(DatasetError, match="unknown tumour type 'HCCC'") as err:
        normalize_tumor_type("HCCC", path="types.csv")
    assert "types.csv" in str(err.value)
    assert normalize_tumor_type("cholangiocarcinoma", allow_other=True) == "cholangiocarcinoma"


def test_checks():
    check_hu(np.array([-1000.0, 40.0, 300.0]))
    for bad in (np.linspace(0, 1, 10), np.array([0.0, 1.0, 2.0]), np.array([10.0, 150.0])):
        with pytest.raises(InputError, match="Hounsfield"):
            check_hu(bad, "x.nii.gz")
    with pytest.raises(InputError, match="NaN"):
        check_finite(np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="empty"):
        check_hu(np.zeros((0,), np.float32))
    g = Geometry.from_spacing((4, 4, 4), (1, 1, 1))
    check_same_grid(g, Geometry.from_spacing((4, 4, 4), (1, 1, 1), origin=(0, 0, 5e-4)))
    with pytest.raises(InputError, match="spacing"):
        check_same_grid(g, Geometry.from_spacing((4, 4, 4), (1, 1, 2)), "l.nii.gz", what="label")
