"""`mpliver plan`: tumour types from a CSV and stratified folds written into dataset.json, refusals clear."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.data.plan import plan_dataset
from mpliver.errors import InputError
from mpliver.io.geometry import Geometry
from mpliver.io.layout import Dataset, write_dataset_json
from mpliver.io.nifti import write_nifti

TYPES = ["cyst"] * 4 + ["FNH"] * 3 + ["HEM"] * 3 + ["HCC"] * 3 + ["METS"] * 2  # 15 cases


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    g = Geometry.from_spacing((4, 4, 2), (1, 1, 1))
    ct = np.full(g.shape, 40.0, np.float32)
    ct[0] = -1000
    for n in range(len(TYPES)):
        for ch in (0, 1):
            write_nifti(root / "imagesTr" / f"p{n:02d}_{ch:04d}.nii.gz", ct, g)
        write_nifti(root / "labelsTr" / f"p{n:02d}.nii.gz", np.zeros(g.shape, np.uint8), g)
    write_dataset_json(
        root,
        ["PV", "ART"],
        len(TYPES),
        cases={"p00": {"note": "keep me"}},
        extra={"name": "mine", "reference": "kept"},
    )
    return root


def _csv(tmp_path, rows):
    p = tmp_path / "types.csv"
    p.write_text("case,tumor_type\n" + "".join(f"{c},{t}\n" for c, t in rows))
    return p


def test_plan_with_types_csv(tmp_path, dataset, capsys):
    rows = [(f"p{n:02d}", t.lower()) for n, t in enumerate(TYPES)]  # lower case: mapped to canonical spelling
    code = main(["plan", str(dataset), "--types", str(_csv(tmp_path, rows)), "--folds", "3", "--seed", "1"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((dataset / "dataset.json").read_text())
    assert (
        meta["name"] == "mine" and meta["reference"] == "kept" and meta["cases"]["p00"]["note"] == "keep me"
    )
    ds = Dataset(dataset)
    assert [ds.tumor_type(f"p{n:02d}") for n in range(len(TYPES))] == TYPES
    folds = ds.folds()
    assert sorted(folds) == [0, 1, 2] and all(len(v) == 5 for v in folds.values())
    for t in set(TYPES):
        counts = Counter(ds.fold(c) for c in ds.cases() if ds.tumor_type(c) == t)
        assert max(counts.values()) - min(counts.get(f, 0) for f in range(3)) <= 1
    before = {c: ds.fold(c) for c in ds.cases()}
    plan_dataset(dataset, num_folds=3, seed=1)  # again from the stored types: same folds
    assert {c: Dataset(dataset).fold(c) for c in ds.cases()} == before
    assert "cases per fold" in capsys.readouterr().out


def test_plan_without_types(dataset):
    table = plan_dataset(dataset, num_folds=5)
    assert Counter(v["fold"] for v in table.values()) == Counter({f: 3 for f in range(5)})
    assert all("tumor_type" not in v for v in table.values())


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(f"p{n:02d}", "HCC") for n in range(14)], "have no tumour type"),  # a case missing
        ([(f"p{n:02d}", "HCC") for n in range(15)] + [("zz", "HCC")], "not in the dataset"),  # an extra case
        ([(f"p{n:02d}", "HCC") for n in range(14)] + [("p14", "angiosarcoma")], "unknown tumour type"),
        ([(f"p{n:02d}", "HCC") for n in range(15)] + [("p03", "HCC")], "listed twice"),
    ],
)
def test_plan_refusals_are_one_line(tmp_path, dataset, capsys, rows, message):
    before = (dataset / "dataset.json").read_text()
    csv_path = _csv(tmp_path, rows)
    assert main(["plan", str(dataset), "--types", str(csv_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and str(csv_path) in err
    assert (dataset / "dataset.json").read_text() == before  # untouched


def test_other_types_allowed_on_request(tmp_path, dataset):
    rows = [(f"p{n:02d}", "HCC") for n in range(14)] + [("p14", "cholangiocarcinoma")]
    table = plan_dataset(dataset, _csv(tmp_path, rows), allow_other_types=True)
    assert table["p14"]["tumor_type"] == "cholangiocarcinoma"


def test_bad_csv_and_fold_count(tmp_path, dataset):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,type\np00,HCC\n")
    with pytest.raises(InputError, match="expected columns case,tumor_type"):
        plan_dataset(dataset, bad)
    with pytest.raises(InputError, match="not found"):
        plan_dataset(dataset, tmp_path / "none.csv")
    with pytest.raises(Exception, match="20 folds for only 15"):
        plan_dataset(dataset, num_folds=20)


def test_test_cases_may_be_typed_but_get_no_fold(tmp_path, dataset):
    g = Geometry.from_spacing((4, 4, 2), (1, 1, 1))
    ct = np.full(g.shape, 40.0, np.float32)
    ct[0] = -1000
    for ch in (0, 1):
        write_nifti(dataset / "imagesTs" / f"t00_{ch:04d}.nii.gz", ct, g)
    meta = json.loads((dataset / "dataset.json").read_text())
    meta["cases"]["t00"] = {"fold": 4}  # stale
    (dataset / "dataset.json").write_text(json.dumps(meta))
    rows = [(f"p{n:02d}", t) for n, t in enumerate(TYPES)] + [("t00", "FNH")]
    table = plan_dataset(dataset, _csv(tmp_path, rows), num_folds=5)
    assert table["t00"] == {"tumor_type": "FNH"}
    assert sorted(c for c, v in table.items() if "fold" in v) == [f"p{n:02d}" for n in range(15)]
