"""`mpliver experiments nnunet`: budget overrides, the row name, and (with the nnU-Net extra) a tiny run on
mpliver's folds, scored with mpliver's metrics and tabulated next to a peer row."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.experiments.crossval import load_result
from mpliver.experiments.nnunet import NnunetBudget, row_label, tabulate
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti


def test_budget_overrides():
    b = NnunetBudget.from_overrides(["nnunet.epochs=3", "iterations_per_epoch=7", "nnunet.batch_size=4"])
    assert (b.epochs, b.iterations_per_epoch, b.batch_size, b.val_iterations_per_epoch) == (3, 7, 4, 2)
    for bad, msg in (("nnunet.lr=3", "is not one of"), ("nnunet.epochs=x", "must be an integer"),
                     ("nnunet.epochs=0", "must be positive"), ("epochs", "is not one of")):
        with pytest.raises(ConfigError, match=msg):
            NnunetBudget.from_overrides([bad])


def test_row_label_names_the_channels():
    assert row_label(["PV", "ART"]) == "nnU-Net v2 2d, early fusion (PV + registered ART)"


@pytest.mark.slow
def test_tiny_nnunet_run_on_mpliver_folds(tmp_path, capsys):
    pytest.importorskip("nnunetv2", reason="the nnU-Net extra is not installed")
    data, exp = tmp_path / "cohort", tmp_path / "exp"
    assert main(["phantom", str(data), "--cases", "4", "--shape", "48,48,12", "--spacing", "5,5,8",
                 "--folds", "2", "--no-previews", "--workers", "1"]) == 0
    code = main(["experiments", "nnunet", str(data), "--out", str(exp), "nnunet.epochs=1",
                 "nnunet.iterations_per_epoch=1", "nnunet.val_iterations_per_epoch=1", "nnunet.batch_size=2"])
    assert code == 0, capsys.readouterr().err
    dataset = Dataset(data)
    root = exp / "nnunet"
    prep = root / "nnUNet_preprocessed" / "Dataset501_MPLiver"
    splits = json.loads((prep / "splits_final.json").read_text())
    assert [sorted(s["val"]) for s in splits] == [sorted(dataset.folds()[f]) for f in sorted(dataset.folds())]
    results = root / "nnUNet_results" / "Dataset501_MPLiver" / "nnUNetTrainer_mpliverBudget__nnUNetPlans__2d"
    # mpliver's Dice of every case, recomputed from nnU-Net's own output: tumour inside the reference liver
    rows = {r["case"]: r for r in csv.DictReader(open(root / "nnunet_2d" / "evaluation" / "per_case.csv"))}
    assert sorted(rows) == sorted(dataset.cases())
    for i, fold in enumerate(sorted(dataset.folds())):
        for case in dataset.folds()[fold]:
            pred = read_nifti(results / f"fold_{i}" / "validation" / f"{case}.nii.gz")[0]
            label = read_nifti(dataset.label_path(case))[0]
            ref, ours = label == 2, (pred == 2) & (label >= 1)
            total = ref.sum() + ours.sum()
            expected = 100.0 if total == 0 else 200.0 * (ref & ours).sum() / total
            assert float(rows[case]["dice"]) == pytest.approx(expected)
    tables = (root / "tables.md").read_text()
    assert "| nnU-Net v2 2d, early fusion (PV + registered ART) | 4 |" in tables
    # a finished `paper` row of the same dataset and folds elsewhere under EXP joins the tables
    peer = exp / "demo" / "paper"
    shutil.copytree(root / "nnunet_2d", peer)
    info = json.loads((peer / "crossval.json").read_text())
    (peer / "crossval.json").write_text(json.dumps({**info, "method": "paper"}))
    row = load_result(root / "nnunet_2d")
    result = tabulate(root, dataset, row.folds, row)
    assert list(result.results) == [row.method, "paper"]
    comparison = (root / "comparison.md").read_text()
    assert f"| paper | {row.method} | dice | 4 | 0.00 ± 0.00 |" in comparison
