"""The newcomer's end-to-end run: synthetic cohort -> pre-processing -> liver model -> cross-validation of the
full model and the single-phase model -> tables -> report -> bundle -> prediction of a held-out case.

Every stage is the library function the corresponding command uses; the demo only chooses sizes that fit a
2-core CPU (or uses the GPU when there is one) and prints what each stage produced.

Folder:
    OUT/cohort/               the synthetic dataset (docs/method.md §2 layout, previews/)
    OUT/cohort.cache/         pre-processed slices (shared by every training run)
    OUT/liver_cohort/         the domain-randomised cohort the liver model trains on (without --randomize;
                              with it, OUT/cohort is that cohort)
    OUT/liver/                the stage-1 liver model (trained with fold 0 held out)
    OUT/experiments/demo/     single_phase and paper cross-validations, the side-by-side tables, report/
    OUT/model.mpliver         the bundle of fold 0's full model plus the liver model
    OUT/predict/              the prediction of one fold-0 test case (never seen by either model)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.data.phantom import PhantomConfig, write_cohort
from mpliver.errors import ConfigError, InputError
from mpliver.evaluation.metrics import dice
from mpliver.experiments import sets as experiments
from mpliver.experiments.packaging import bundle_from_runs
from mpliver.experiments.report import write_report
from mpliver.experiments.sets import REFERENCE, ExperimentSet, Row
from mpliver.inference.predict import predict, write_outputs
from mpliver.io.labels import DEFAULT_PHASES, TUMOR
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti
from mpliver.training.config import load_task_config
from mpliver.training.run_info import read_run_info
from mpliver.training.trainer import train

DEMO_SET = ExperimentSet(
    "demo",
    "Demo: single-phase (PV only) vs the full two-phase model (SAM + URIM)",
    (
        Row("single_phase", ("model.name=single_phase", "model.urim=false")),
        Row(REFERENCE, ("model.name=paper",)),
    ),
    (("single_phase", REFERENCE),),
)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo: the default is sized for 2 CPU cores, `quick()` is the smoke version."""

    cases: int = 48  # the paper's composition in proportion: 14 cyst, 8 FNH, 10 HEM, 10 HCC, 6 METS
    folds: int = 2  # every fold runs, so every case is evaluated once
    seed: int = 0
    preset: str = "cpu-small"
    overrides: tuple[str, ...] = ("optim.epochs=6", "optim.step_epochs=5")
    liver_overrides: tuple[str, ...] = ("optim.epochs=3", "data.slices_per_epoch=160")
    phantom_shape: tuple[int, int, int] | None = None
    phantom_spacing: tuple[float, float, float] | None = None
    phases: tuple[str, ...] = DEFAULT_PHASES  # the protocol: the first is the primary phase
    # the sim-to-real recipe (docs/phantom.md, docs/results.md "Sim-to-real"): a domain-randomised cohort and
    # intensity augmentation in every training run, for a bundle meant to meet real CT
    randomize: bool = False
    # The liver model follows that recipe in every demo. Its only job is to find livers in real CT, whatever
    # cohort the tumour models see. It trains on a randomised cohort at sim_to_real.py's budget: 3 epochs of
    # 160 slices scored 72-84 % on the real CT, and the default cohort's liver model (no diaphragm on the
    # liver) marked 33 mL of tumour outside a real liver end to end (docs/results.md, 2026-12-03).
    randomized_liver_overrides: tuple[str, ...] = ("optim.epochs=12", "data.slices_per_epoch=384")
    # ... and the tumour models leave lesions that their input phases do not show out of the loss
    # (docs/method.md §4.7; on real livers without tumour it cut the single-phase false positives from up to
    # 46 % of the liver to under 2 %, docs/results.md "Sim-to-real")
    randomized_tumor_overrides: tuple[str, ...] = ("data.faint_lesion_cnr=0.5",)

    def phantom_config(self, liver: bool = False) -> PhantomConfig:
        """The generator settings of the cohort (`liver`: of the liver model's cohort, always randomised): the
        protocol, the grid when given, randomised when asked."""
        config = PhantomConfig(phases=tuple(self.phases))
        if self.phantom_shape:
            config = dataclasses.replace(config, shape=self.phantom_shape)
        if self.phantom_spacing:
            config = dataclasses.replace(config, spacing=self.phantom_spacing)
        return config.randomized() if self.randomize or liver else config

    def training_overrides(self, liver: bool = False) -> list[str]:
        """The key=value overrides of the liver run (`liver`, always the sim-to-real recipe) or of the
        cross-validation runs."""
        if liver:
            return [*self.liver_overrides, *self.randomized_liver_overrides, "data.intensity_aug=true"]
        if not self.randomize:
            return list(self.overrides)
        return [*self.overrides, *self.randomized_tumor_overrides, "data.intensity_aug=true"]

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smoke run of a few minutes at most: tiny cohort, one short epoch per model, 64-pixel inputs."""
        tiny = ("data.input_size=64", "optim.epochs=1", "data.slices_per_epoch=24", "data.val_max_slices=16",
                "data.batch_size=8")
        return cls(
            cases=8,
            folds=2,
            overrides=tiny,
            liver_overrides=tiny,
            phantom_shape=(96, 96, 24),
            phantom_spacing=(3.2, 3.2, 7.0),
            randomized_liver_overrides=(),
        )


@dataclass
class DemoResult:
    out_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    tables_md: Path | None = None
    report: Path | None = None
    bundle: Path | None = None
    predicted_case: str | None = None
    predicted_dice: float | None = None
    fnh_dpc: dict[str, float | None] = field(default_factory=dict)


def run_demo(out_dir: str | Path, settings: DemoSettings | None = None,
             say: Callable[[str], None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Run every stage into `out_dir`; finished stages of an earlier demo in the same folder are reused.
    `progress(done, total)` follows the synthetic cohort's cases."""
    settings = settings or DemoSettings()
    say = say or print
    out = Path(out_dir)
    result = DemoResult(out)
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.seconds[name] = round(now - clock, 1)
        clock = now

    # 1. the synthetic cohort
    cohort = out / "cohort"
    config = settings.phantom_config()
    if _cohort_matches(cohort, settings, config):
        say(f"[1/6] synthetic cohort: reusing {cohort}")
    else:
        later = [p for p in (out / "liver", out / "experiments", out / "model.mpliver") if p.exists()]
        if later and (cohort / "dataset.json").exists():
            # the models there were trained on the cohort these settings would replace: refuse, not mix
            raise ConfigError(f"{out} holds a demo run with other settings (cohort, seed, size, protocol or "
                              "--randomize); use another --out, or delete the folder to start afresh")
        say(f"[1/6] synthetic cohort: {settings.cases} cases, {settings.folds} stratified folds -> {cohort}")
        write_cohort(cohort, settings.cases, seed=settings.seed, config=config, overwrite=True, previews=True,
                     progress=progress, num_folds=settings.folds)
    stage("cohort")
    dataset = Dataset(cohort)

    # 2. the liver model (stage 1), fold 0 held out, on a randomised cohort (DemoSettings); its training
    # pre-processes that cohort into its cache
    liver_dir = out / "liver"
    liver_cohort = cohort if settings.randomize else out / "liver_cohort"
    if liver_cohort != cohort and not _cohort_matches(liver_cohort, settings, settings.phantom_config(True)):
        if liver_dir.exists() and _trained_on(liver_dir) != liver_cohort.resolve():
            # trained on another cohort, e.g. the default one before 2026-12-03 (a liver model of this
            # recipe whose cohort was deleted gets its cohort written again: the phantom is deterministic)
            raise ConfigError(f"{out} holds a liver model of other settings; use another --out, or delete "
                              f"{liver_dir} and {out / 'model.mpliver'} to train it afresh")
        say(f"[2/6] randomised cohort for the liver model ({settings.cases} cases) -> {liver_cohort}")
        write_cohort(liver_cohort, settings.cases, seed=settings.seed, config=settings.phantom_config(True),
                     overwrite=True, previews=False, num_folds=settings.folds)
    liver_config = load_task_config(settings.preset, "liver", settings.training_overrides(liver=True))
    if (liver_dir / "done").exists():
        say(f"[2/6] liver model: reusing {liver_dir}")
    else:
        say("[2/6] pre-processing and liver model (liver_resunet, randomised cohort, fold 0 held out)")
        train(liver_config, liver_cohort, 0, liver_dir)
        (liver_dir / "done").touch()
    stage("liver")

    # 3. cross-validation of the single-phase and the full model, every fold
    say(f"[3/6] cross-validation ({settings.folds} folds, every case tested once): single_phase, then paper")
    experiments.EXPERIMENT_SETS.setdefault(DEMO_SET.name, DEMO_SET)
    exp = experiments.run_experiments(DEMO_SET.name, cohort, out / "experiments", preset=settings.preset,
                                      overrides=settings.training_overrides(), folds=settings.folds,
                                      on_event=lambda msg: say(f"      {msg}"))
    result.tables_md = exp.out_dir / "tables.md"
    for name, res in exp.results.items():
        fnh = res.by_type.get("FNH", {})
        result.fnh_dpc[name] = fnh.get("dpc")
    stage("crossval")

    # 4. the report
    say("[4/6] report: overlays, confidence maps, training curves, per-type bars")
    result.report = write_report(exp.out_dir / REFERENCE)
    write_report(exp.out_dir)
    stage("report")

    # 5. bundle fold 0's full model with the liver model
    say("[5/6] model bundle (fold 0 full model + liver model)")
    fold0 = exp.out_dir / REFERENCE / "fold_0"
    result.bundle = bundle_from_runs(fold0, out / "model.mpliver", liver_run=liver_dir)
    stage("bundle")

    # 6. predict one case that neither model saw, from its NIfTI files, with the liver model's mask
    case = dataset.folds()[0][0]
    say(f"[6/6] predict {case} (a fold-0 test case) with the bundle -> {out / 'predict'}")
    phases = {name: dataset.image_path(case, i) for i, name in enumerate(dataset.phases)}
    prediction = predict(result.bundle, phases, case_id=case)
    write_outputs(prediction, out / "predict")
    result.predicted_case = case
    result.predicted_dice = _tumor_dice(prediction.label, dataset, case)
    stage("predict")
    return result


def _trained_on(run_dir: Path) -> Path | None:
    """The dataset a training run folder was trained on (its run_info.json), None when unknown."""
    try:
        return Path(read_run_info(run_dir)["fold_info"]["dataset"]).resolve()
    except (InputError, KeyError, TypeError):
        return None


def _cohort_matches(cohort: Path, settings: DemoSettings, config: Any) -> bool:
    """True when `cohort` holds the cohort these settings would write (same seed, size, folds, config)."""
    meta_path = cohort / "dataset.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    synthetic = meta.get("synthetic") or {}
    wanted = json.loads(json.dumps(config.to_dict()))  # tuples become lists, as in the stored block
    return (synthetic.get("seed") == settings.seed and synthetic.get("num_cases") == settings.cases
            and synthetic.get("num_folds") == settings.folds and synthetic.get("config") == wanted)


def _tumor_dice(label_pred: Any, dataset: Any, case: str) -> float:
    ref, _ = read_nifti(dataset.label_path(case))
    return float(dice(ref == TUMOR, np.asarray(label_pred) == TUMOR))
