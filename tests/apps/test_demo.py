"""`mpliver demo --quick`: the whole pipeline end to end at smoke size (the README's main job, reduced)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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
    # the liver model trained on its own randomised cohort (same seed and size), fold 0 held out
    liver_cohort = json.loads((out / "liver_cohort" / "dataset.json").read_text())["synthetic"]
    assert liver_cohort["num_cases"] == 8 and liver_cohort["config"]["noise_sd"] == [8.0, 25.0]
    assert "liver_cohort" in json.loads((out / "liver" / "run_info.json").read_text())["fold_info"]["dataset"]
    # the held-out prediction lies on the PV grid of its case
    case = cohort.folds()[0][0]
    label, geom = read_nifti(out / "predict" / f"{case}.nii.gz")
    _, pv_geom = read_nifti(cohort.image_path(case, 0))
    assert pv_geom.same_grid(geom)
    assert set(np.unique(label)) <= {0, 1, 2}
    unc, _ = read_nifti(out / "predict" / f"{case}_uncertainty.nii.gz")
    assert unc.min() >= 0 and unc.max() <= 1
    assert (out / "predict" / f"{case}_lesions.csv").exists()


def test_randomize_gives_the_sim_to_real_recipe_and_the_default_keeps_the_paper_cohort():
    from mpliver.apps.demo import DemoSettings
    from mpliver.data.phantom import PhantomConfig

    plain = DemoSettings()
    assert plain.phantom_config() == PhantomConfig()
    assert "data.intensity_aug=true" not in plain.training_overrides()
    real = DemoSettings(randomize=True, phases=("EQP", "ART"))
    assert real.phantom_config() == PhantomConfig(phases=("EQP", "ART")).randomized()
    assert real.training_overrides() == [*plain.training_overrides(), "data.faint_lesion_cnr=0.5",
                                         "data.intensity_aug=true"]
    assert "data.faint_lesion_cnr=0.5" not in plain.training_overrides()
    # the liver model follows the sim-to-real recipe in every demo: randomised cohort, budget, augmentation
    liver = ["optim.epochs=3", "data.slices_per_epoch=160", "optim.epochs=12", "data.slices_per_epoch=384",
             "data.intensity_aug=true"]
    assert plain.training_overrides(liver=True) == real.training_overrides(liver=True) == liver
    assert plain.phantom_config(liver=True) == PhantomConfig().randomized()
    assert real.phantom_config(liver=True) == real.phantom_config()
    quick = DemoSettings.quick()
    quick_real = dataclasses.replace(quick, randomize=True)
    grid = quick_real.phantom_config()
    assert grid.shape == quick.phantom_shape and grid.noise_sd == (8.0, 25.0)  # randomised on its own grid
    assert quick_real.training_overrides(liver=True) == quick.training_overrides(liver=True)  # quick budget
    assert "optim.epochs=12" not in quick.training_overrides(liver=True)


def test_demo_cli_passes_randomize_and_phases(monkeypatch, tmp_path):
    import mpliver.apps.demo as demo

    seen = {}

    def fake_run_demo(out, settings, say=None, progress=None):
        seen["settings"] = settings
        return demo.DemoResult(Path(out))

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert main(["demo", "--quick", "--randomize", "--phases", "EQP,ART", "--out", str(tmp_path)]) == 0
    assert seen["settings"].randomize and seen["settings"].phases == ("EQP", "ART")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert not seen["settings"].randomize


def test_a_demo_folder_of_other_settings_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "cohort").mkdir(parents=True)
    stored = '{"synthetic": {"seed": 0, "num_cases": 8, "num_folds": 2, "config": {}}}'
    (out / "cohort" / "dataset.json").write_text(stored)  # a cohort of other settings ...
    (out / "liver").mkdir()  # ... with a liver model trained on it
    assert main(["demo", "--quick", "--randomize", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and str(out) in err[0]
    assert (out / "cohort" / "dataset.json").read_text() == stored  # nothing overwritten


def test_a_demo_folder_with_a_liver_model_of_the_old_recipe_is_refused(tmp_path, capsys):
    """A demo folder whose liver model was trained on the default cohort (before every demo trained it on a
    randomised one) is refused in one line, not reused."""
    from mpliver.apps.demo import DemoSettings
    from mpliver.data.phantom import write_cohort

    out = tmp_path / "demo"
    quick = DemoSettings.quick()
    write_cohort(out / "cohort", quick.cases, seed=quick.seed, config=quick.phantom_config(), overwrite=True,
                 previews=False, num_folds=quick.folds)
    (out / "liver").mkdir()
    (out / "liver" / "done").touch()
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "liver model of other settings" in err[0]
    assert not (out / "liver_cohort").exists() and (out / "liver" / "done").exists()
