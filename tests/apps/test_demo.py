"""`mpliver demo --quick`: the whole pipeline end to end at smoke size (the README's main job, reduced)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DPC" in printed and "FNH" in printed and "wall time" in printed

    cohort = Dataset(out / "cohort")
    cases = cohort.validate()
    assert len(cases) == 8
    # both rows were cross-validated on every case (all folds run) and tabulated side by side
    exp = out / "experiments" / "demo"
    table1 = (exp / "table1.csv").read_text()
    assert "single_phase" in table1 and "paper" in table1
    for row in ("single_phase", "paper"):
        summary = json.loads((exp / row / "crossval.json").read_text())
        assert sorted(summary["folds"]) == [0, 1]
        preds = sorted(p.name for p in (exp / row / "predictions").glob("*.nii.gz"))
        assert preds == sorted(f"{c}.nii.gz" for c in cases)
    # the report links figures that exist
    index = (exp / "paper" / "report" / "index.md").read_text()
    pngs = list((exp / "paper" / "report").glob("*.png"))
    assert pngs and all(p.name in index for p in pngs)
    # the held-out prediction lies on the PV grid of its case
    case = cohort.folds()[0][0]
    label, geom = read_nifti(out / "predict" / f"{case}.nii.gz")
    _, pv_geom = read_nifti(cohort.image_path(case, 0))
    assert pv_geom.same_grid(geom)
    assert set(np.unique(label)) <= {0, 1, 2}
    unc, _ = read_nifti(out / "predict" / f"{case}_uncertainty.nii.gz")
    assert unc.min() >= 0 and unc.max() <= 1
    assert (out / "predict" / f"{case}_lesions.csv").exists()
