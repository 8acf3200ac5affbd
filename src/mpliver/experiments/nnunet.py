"""`mpliver experiments nnunet`: nnU-Net v2 (2d, early fusion of PV and registered ART) on mpliver's folds,
scored with mpliver's metrics into the same tables as the other experiment rows.

Folder EXP/nnunet/:
    nnUNet_raw/DatasetXXX_Name/     the export (`convert --to nnunet --register`) with splits_final.json
    nnUNet_preprocessed/, nnUNet_results/   nnU-Net's own folders (its env variables point here)
    nnunet_2d/                      the row in cross-validation form: predictions/ (nnU-Net's tumour inside
                                    the reference liver, as the other rows are scored), evaluation/,
                                    table1/table2/folds, crossval.json, budget.json
    tables.md, table1.md, ...       the row next to the peer rows (finished `paper` and `single_phase`
                                    cross-validations of the same dataset and folds, found under EXP)

nnU-Net's fold i is mpliver's i-th fold (sorted): train on the others, predict fold i (nnU-Net's "val",
its final validation, with mirroring TTA as nnU-Net does). Training is nnU-Net's trainer shortened to the
budget (see `NnunetBudget`), on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mpliver.data.dataset import split_cases
from mpliver.data.registration import liver_aligner
from mpliver.errors import RESEARCH_NOTICE, ConfigError, InputError
from mpliver.experiments.crossval import (
    CrossvalResult,
    evaluate_run,
    load_result,
    prediction_path,
    select_folds,
)
from mpliver.experiments.sets import REFERENCE, ExperimentResult, ExperimentSet, Row, write_tables
from mpliver.extras import require_nnunet
from mpliver.inference.slices import label_map
from mpliver.io.atomic import write_json_atomic
from mpliver.io.labels import LIVER, TUMOR
from mpliver.io.layout import Dataset
from mpliver.io.lock import FolderLock
from mpliver.io.nifti import read_nifti, write_nifti
from mpliver.io.nnunet import REGISTRATION_JSON, export_nnunet, nnunet_folder_name

SET_NAME = "nnunet"
ROW_DIR = "nnunet_2d"
CONFIGURATION = "2d"
TRAINER = "nnUNetTrainer_mpliverBudget"
PEERS = ("single_phase", REFERENCE)
_NOTE = f"nnU-Net v2 CV prediction; {RESEARCH_NOTICE}"  # within the 79 bytes of a NIfTI header


@dataclass(frozen=True)
class NnunetBudget:
    """The shortened nnU-Net training (nnU-Net's default: 1000 epochs of 250 iterations, 50 validation
    iterations, the plan's batch size). `batch_size` 0 keeps the plan's."""

    epochs: int = 2
    iterations_per_epoch: int = 20
    val_iterations_per_epoch: int = 2
    batch_size: int = 0
    threads: int = 2

    @classmethod
    def from_overrides(cls, overrides: Sequence[str]) -> NnunetBudget:
        """`nnunet.epochs=3`-style overrides (the `nnunet.` prefix optional); positive integers."""
        values = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.removeprefix("nnunet.")
            if not sep or key not in cls.__dataclass_fields__:
                raise ConfigError(f"experiments nnunet: '{item}' is not one of "
                                  f"{', '.join('nnunet.' + k + '=N' for k in cls.__dataclass_fields__)}")
            try:
                values[key] = int(text)
            except ValueError:
                raise ConfigError(f"experiments nnunet: {key} must be an integer, got '{text}'") from None
            if values[key] < (0 if key == "batch_size" else 1):
                raise ConfigError(f"experiments nnunet: {key} must be positive, got {values[key]}")
        return cls(**values)


def row_label(phases: Sequence[str]) -> str:
    """The row's name in the tables, e.g. 'nnU-Net v2 2d, early fusion (PV + registered ART)'."""
    channels = " + ".join([phases[0]] + [f"registered {p}" for p in phases[1:]])
    return f"nnU-Net v2 2d, early fusion ({channels})"


def nnunet_env(exp_dir: Path, threads: int) -> dict[str, str]:
    """The environment of nnU-Net's steps: its three folders inside EXP/nnunet, data augmentation in the
    training process (nnUNet_n_proc_DA=0), no torch.compile, `threads` torch threads (nnU-Net's predictor
    uses at most nnUNet_def_n_proc threads, which also sizes its export pool)."""
    env = dict(os.environ)
    env.update(nnUNet_raw=str(exp_dir / "nnUNet_raw"),
               nnUNet_preprocessed=str(exp_dir / "nnUNet_preprocessed"),
               nnUNet_results=str(exp_dir / "nnUNet_results"), nnUNet_n_proc_DA="0",
               nnUNet_def_n_proc=str(threads),
               nnUNet_compile="false", MPLIVER_NNUNET_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1")  # the log shows each step as it goes
    return env


def run_step(args: list[str], env: dict[str, str], log: Path,
             module: str = "mpliver.experiments.nnunet_worker") -> None:
    """Run one nnU-Net step (`python -m module args`) in a child process, its output appended to `log`;
    a failure is one line quoting the log's last line. nnU-Net reads its folders when imported, hence a
    child process per step."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(args)}\n")
        handle.flush()
        code = subprocess.call([sys.executable, "-m", module, *args], env=env, stdout=handle,
                               stderr=subprocess.STDOUT)
    if code != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1][:200] if lines else ""
        raise InputError(f"nnU-Net step '{args[0]}' failed (exit {code}): {last}; full output in this log",
                         log)


def run_nnunet_experiment(
    dataset_dir: str | Path,
    out_dir: str | Path,
    folds: int | Sequence[int] | None = None,
    budget: NnunetBudget | None = None,
    dataset_id: int = 501,
    peer_roots: Sequence[Path] = (),
    on_event: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Export with registered ART, plan/pre-process, train and predict every selected fold with nnU-Net,
    score with mpliver's metrics and tabulate next to the peer rows found under `out_dir`."""
    require_nnunet("mpliver experiments nnunet")
    budget = budget or NnunetBudget()
    say = on_event or (lambda _msg: None)
    dataset = Dataset(dataset_dir)
    all_folds = sorted(dataset.folds())
    if len(all_folds) < 2:
        raise InputError(f"nnU-Net cross-validation needs at least 2 folds, dataset.json has "
                         f"{len(all_folds)}", Path(dataset_dir) / "dataset.json")
    selected = select_folds(all_folds, folds)
    exp_dir = Path(out_dir) / SET_NAME
    run_dir = exp_dir / ROW_DIR
    raw = exp_dir / "nnUNet_raw" / nnunet_folder_name(dataset_id, "MPLiver")
    env = nnunet_env(exp_dir, budget.threads)
    log = exp_dir / "nnunet.log"
    with FolderLock(exp_dir, "nnU-Net experiment in this folder"):  # a second run here is refused
        started = time.time()
        _check_budget(run_dir, budget)
        write_json_atomic(run_dir / "budget.json", {**asdict(budget), "trainer": TRAINER,
                                                    "configuration": CONFIGURATION, "device": "cpu"})

        if not (raw / REGISTRATION_JSON).is_file():
            say(f"exporting {dataset.root} with registered {'/'.join(dataset.phases[1:])} -> {raw}")
            export_nnunet(dataset.root, raw.parent, dataset_id=dataset_id, name="MPLiver", overwrite=True,
                          align=liver_aligner(),
                          align_name="registered by mpliver's label-free liver registration")
        plans = exp_dir / "nnUNet_preprocessed" / raw.name / "nnUNetPlans.json"
        if not plans.is_file() or not (plans.parent / "splits_final.json").is_file():
            say(f"nnU-Net planning and pre-processing ({CONFIGURATION}); log: {log}")
            # the planner sets torch's threads to nnUNet_n_proc_DA, which must then be positive
            run_step(["prepare", str(dataset_id), CONFIGURATION], {**env, "nnUNet_n_proc_DA": "1"}, log)

        result = CrossvalResult(run_dir=run_dir, method=row_label(dataset.phases), folds=selected,
                                model=f"nnunetv2 {CONFIGURATION} {TRAINER}")
        test_cases: list[str] = []
        for fold in selected:
            cases = split_cases(dataset, fold)[2]
            test_cases += cases
            index = all_folds.index(fold)
            val_dir = (exp_dir / "nnUNet_results" / raw.name / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
                       / f"fold_{index}" / "validation")
            predicted = all((val_dir / f"{c}.nii.gz").is_file() for c in cases)
            if predicted and (val_dir / "summary.json").is_file():
                say(f"fold {fold}: finished earlier, skipped")
                result.skipped.append(fold)
            else:
                say(f"fold {fold}: nnU-Net training ({budget.epochs} epochs x {budget.iterations_per_epoch} "
                    f"iterations) and prediction of {len(cases)} test cases; log: {log}")
                step = ["train", str(dataset_id), CONFIGURATION, str(index), json.dumps(asdict(budget))]
                run_step(step, env, log)
                result.trained.append(fold)
            for case in cases:
                _write_prediction(dataset, run_dir, case, val_dir / f"{case}.nii.gz")
        say(f"evaluating {len(test_cases)} pooled test cases")
        evaluate_run(result, dataset, sorted(test_cases), started=started)
        return tabulate(exp_dir, dataset, selected, result, peer_roots)


def _check_budget(run_dir: Path, budget: NnunetBudget) -> None:
    """Refuse to mix two budgets in one folder (the training of finished folds would not be redone)."""
    path = run_dir / "budget.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        for key, value in asdict(budget).items():
            if key != "threads" and saved.get(key) != value:
                raise ConfigError(f"holds an nnU-Net run with {key}={saved.get(key)}, not {value}; choose "
                                  "another --out", run_dir)


def _write_prediction(dataset: Dataset, run_dir: Path, case: str, source: Path) -> None:
    """nnU-Net's tumour (label 2) inside the reference liver, on the PV grid, as crossval writes its rows."""
    if not source.is_file():
        raise InputError(f"nnU-Net wrote no prediction for test case {case}", source)
    pred, _ = read_nifti(source)
    label, geometry = read_nifti(dataset.label_path(case))
    if pred.shape != label.shape:
        raise InputError(f"nnU-Net's prediction has shape {pred.shape}, the label {label.shape}", source)
    write_nifti(prediction_path(run_dir, case), label_map(pred == TUMOR, label >= LIVER), geometry,
                description=_NOTE)


def find_peers(out_dir: Path, dataset: Dataset, folds: Sequence[int]) -> dict[str, CrossvalResult]:
    """Finished `single_phase` and `paper` cross-validations under `out_dir` (any set, any depth up to 3) of
    the same dataset and folds; the first found (sorted paths) of each."""
    peers: dict[str, CrossvalResult] = {}
    root = str(dataset.root.resolve())
    for path in sorted(out_dir.glob("**/crossval.json")):
        name = path.parent.name
        if name not in PEERS or name in peers or len(path.relative_to(out_dir).parts) > 4:
            continue
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if info.get("dataset") == root and sorted(info.get("folds", [])) == sorted(folds):
            peers[name] = load_result(path.parent)
    return peers


def tabulate(exp_dir: Path, dataset: Dataset, folds: Sequence[int], row: CrossvalResult,
             peer_roots: Sequence[Path] = ()) -> ExperimentResult:
    """The nnU-Net row next to the peer rows, in the tables every experiment set writes (EXP/nnunet)."""
    peers: dict[str, CrossvalResult] = {}
    for root in [exp_dir.parent, *peer_roots]:
        for name, res in find_peers(Path(root), dataset, folds).items():
            peers.setdefault(name, res)
    rows = (Row(row.method, ()),) + tuple(Row(n, ()) for n in PEERS if n in peers)
    pairs = tuple((n, row.method) for n in PEERS if n in peers)
    title = "nnU-Net v2 next to the paper's model and the single-phase model"
    exp = ExperimentSet(SET_NAME, title, rows, pairs, seeded=False)
    result = ExperimentResult(out_dir=exp_dir, set=exp, results={row.method: row, **peers},
                              ran=[row.method] if row.trained else [],
                              skipped=[] if row.trained else [row.method])
    write_tables(result)
    return result
