"""Cross-validation of one configuration: train every fold, predict its test cases, pool and evaluate.

Run folder:
    RUN/config.yaml, RUN/run_info.json        the resolved config, environment, git revision and seed
    RUN/fold_F/                               the training run of fold F (its own config, log,
                                              checkpoints) and `done.json` once its predictions are written
    RUN/predictions/CASE.nii.gz               0/1/2 label map on the PV grid (liver from the label, as the
                                              input mask; tumour = the model's), one per test case
    RUN/predictions/confidence/CASE.npz       URIM confidence of the slice with the most tumour (URIM models)
    RUN/evaluation/                           `evaluate_folders` output over the pooled test folds
    RUN/table1.md|csv, RUN/table2.md|csv      Table 1 (six metrics) and Table 2 (DPC per tumour type)
    RUN/folds.md|csv                          the same metrics per test fold (the fold-to-fold spread)
    RUN/crossval.json                         what ran, and the pooled summary; written last

A fold is finished when `done.json`, its checkpoint and every test prediction exist; such folds are skipped,
and a fold with a partial training run is resumed from its last checkpoint. A run folder holding a different
configuration is refused, so results of two configurations never mix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mpliver.data.cache import CachedCase
from mpliver.data.dataset import split_cases
from mpliver.errors import RESEARCH_NOTICE, ConfigError, DatasetError, InputError
from mpliver.evaluation.aggregate import summarize, summarize_by_type
from mpliver.evaluation.evaluate import evaluate_folders, read_per_case_csv
from mpliver.evaluation.tables import table1_csv, table1_markdown, table2_csv, table2_markdown
from mpliver.inference.slices import label_map, most_tumor_slice, predict_cached_case
from mpliver.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from mpliver.io.labels import LIVER, TUMOR, type_order
from mpliver.io.layout import Dataset
from mpliver.io.lock import FolderLock
from mpliver.io.nifti import read_nifti, write_nifti
from mpliver.models.inference_copy import inference_model
from mpliver.runtime import DistInfo, resolve_device
from mpliver.training.checkpoint import load_checkpoint
from mpliver.training.config import Config, config_differences, describe_differences
from mpliver.training.data import build_model, resolve_cache
from mpliver.training.run_info import CONFIG_YAML, write_run_info
from mpliver.training.trainer import train as train_run

CROSSVAL_JSON = "crossval.json"
DONE_JSON = "done.json"
PREDICTIONS = "predictions"
CONFIDENCE = "confidence"
EVALUATION = "evaluation"
_PREDICTION_NOTE = f"cross-validation prediction; {RESEARCH_NOTICE}"

TrainFn = Callable[..., Path]


@dataclass
class CrossvalResult:
    """What a cross-validation produced: the folds (trained now or skipped), pooled records and summaries."""

    run_dir: Path
    method: str
    folds: list[int]
    model: str = ""
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    by_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_fold: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None  # wall time of the call that produced it


def select_folds(available: Sequence[int], folds: int | Sequence[int] | None) -> list[int]:
    """None: every fold; an int K: the first K folds (sorted); a sequence: exactly those folds."""
    available = sorted(available)
    if folds is None:
        return available
    if isinstance(folds, int):
        if folds < 1:
            raise ConfigError(f"--folds must be at least 1, got {folds}")
        if folds > len(available):
            raise ConfigError(f"--folds {folds} but the dataset has {len(available)} folds")
        return available[:folds]
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ConfigError(f"fold {unknown[0]} does not exist (folds: {available})")
    return sorted(set(folds))


def check_run_config(run_dir: Path, config: Config) -> None:
    """Refuse a run folder whose saved config computes something else than `config` (naming every key)."""
    path = run_dir / CONFIG_YAML
    if not path.exists():
        return
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError("unreadable config of an earlier run; choose another --out", path) from None
    diffs = config_differences(saved, config.to_dict())
    if diffs:
        raise ConfigError(
            f"holds a run with {describe_differences(diffs)}; choose another --out to run a different "
            "configuration",
            run_dir,
        )


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold_{fold}"


def prediction_path(run_dir: Path, case: str) -> Path:
    return run_dir / PREDICTIONS / f"{case}.nii.gz"


def fold_finished(run_dir: Path, fold: int, test_cases: Sequence[str], config: Config) -> bool:
    """True when `fold` has its final checkpoint, its done marker and a prediction for every test case."""
    folder = fold_dir(run_dir, fold)
    done = folder / DONE_JSON
    if not done.exists() or not (folder / config.train.checkpoint_dir / "last.pt").exists():
        return False
    try:
        marker = json.loads(done.read_text())
    except json.JSONDecodeError:
        return False
    if sorted(marker.get("test_cases", [])) != sorted(test_cases):
        return False
    return all(prediction_path(run_dir, c).exists() for c in test_cases)


def crossval(
    config: Config,
    dataset_dir: str | Path,
    out_dir: str | Path,
    folds: int | Sequence[int] | None = None,
    name: str | None = None,
    checkpoint: str = "best",
    train_fn: TrainFn | None = None,
    on_event: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> CrossvalResult:
    """Train and evaluate the folds of `dataset_dir` (all, the first K, or the given ones) into `out_dir`.

    `name` labels the method in the tables (default: the model name); `checkpoint` is `best` (the best
    validation Dice) or `last`. `train_fn` defaults to `mpliver.training.trainer.train`; `on_event` receives
    one-line progress messages and `on_epoch` each epoch's log row (passed to `train_fn`).
    """
    if config.train.task != "tumor":
        raise ConfigError(f"crossval evaluates the tumour task; got train.task={config.train.task!r}")
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    train_fn = train_fn or train_run
    say = on_event or (lambda _msg: None)
    dataset_dir, run_dir = Path(dataset_dir), Path(out_dir)
    dataset = _cv_dataset(dataset_dir)
    selected = select_folds(list(dataset.folds()), folds)
    method = name or config.model.name
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("output path exists and is not a folder", run_dir)
    device = resolve_device(config.train.device, what="train.device")  # a bad device creates no folder
    with FolderLock(run_dir, "cross-validation of this folder"):  # a second run here is refused
        check_run_config(run_dir, config)
        write_run_info(run_dir, config, config.train.seed, device, extra={
            "kind": "crossval", "method": method, "dataset": str(dataset_dir.resolve()), "folds": selected,
            "checkpoint": checkpoint,
        })
        (run_dir / CROSSVAL_JSON).unlink(missing_ok=True)  # written again once this call completes
        cache, _ = resolve_cache(config, dataset_dir, DistInfo())

        call_started = time.time()
        result = CrossvalResult(run_dir=run_dir, method=method, folds=selected, model=config.model.name)
        test_cases: list[str] = []
        for fold in selected:
            cases = split_cases(dataset, fold)[2]
            test_cases += cases
            if fold_finished(run_dir, fold, cases, config):
                say(f"fold {fold}: finished earlier, skipped")
                result.skipped.append(fold)
                continue
            folder = fold_dir(run_dir, fold)
            resume = (folder / config.train.checkpoint_dir / "last.pt").exists()
            say(f"fold {fold}: {'resuming' if resume else 'training'} ({len(cases)} test cases) -> {folder}")
            started = time.time()
            train_fn(config, dataset_dir, fold, folder, resume=resume, on_epoch=on_epoch)
            say(f"fold {fold}: predicting {len(cases)} test cases")
            predict_fold(config, run_dir, fold, cases, cache, dataset, checkpoint, device)
            write_json_atomic(folder / DONE_JSON, {"fold": fold, "test_cases": cases,
                                                   "checkpoint": checkpoint,
                                                   "seconds": round(time.time() - started, 1)})
            result.trained.append(fold)

        say(f"evaluating {len(test_cases)} pooled test cases")
        evaluate_run(result, dataset, sorted(test_cases), started=call_started)
        return result


def _cv_dataset(dataset_dir: Path) -> Dataset:
    """The dataset to cross-validate; refused in one line without dataset.json or with fewer than 2 folds."""
    if not (dataset_dir / "dataset.json").is_file():
        raise InputError("not a dataset folder (no dataset.json)", dataset_dir)
    dataset = Dataset(dataset_dir)
    n_folds = len(dataset.folds())
    if n_folds < 2:
        raise DatasetError(
            f"cross-validation needs at least 2 folds, dataset.json has {n_folds}; "
            f"run `mpliver plan {dataset_dir}`",
            dataset_dir / "dataset.json",
        )
    return dataset


def predict_fold(
    config: Config,
    run_dir: Path,
    fold: int,
    cases: Sequence[str],
    cache: Path,
    dataset,
    checkpoint: str,
    device,
) -> None:
    """Predict the test `cases` of `fold` with its trained model; write label maps (and confidence slices)."""
    ckpt_path = fold_dir(run_dir, fold) / config.train.checkpoint_dir / f"{checkpoint}.pt"
    if not ckpt_path.exists():  # a run without validation keeps last.pt only until it completes
        ckpt_path = ckpt_path.with_name("last.pt")

    model = build_model(config)
    model.load_state_dict(load_checkpoint(ckpt_path)["model"])
    model = inference_model(model.eval(), device)  # BN folded, channels_last: same outputs, faster
    for case in cases:
        cached_root = cache / "cases" / case
        if not (cached_root / "meta.json").exists():
            raise InputError(f"test case {case} is missing from the cache; pre-process again", cache)
        cached = CachedCase.open(cached_root)
        pred = predict_cached_case(
            model, cached, batch_size=config.data.batch_size, device=device, amp=config.train.amp,
            channels_last=True,
        )
        label, geometry = read_nifti(dataset.label_path(case))
        if label.shape != pred.probability.shape:
            raise InputError(
                f"the cached case has shape {pred.probability.shape}, the label {label.shape}; "
                "pre-process again",
                dataset.label_path(case),
            )
        write_nifti(
            prediction_path(run_dir, case),
            label_map(pred.tumor, label >= LIVER),
            geometry,
            description=_PREDICTION_NOTE,
        )
        if pred.slices.confidence is not None:
            _save_confidence(
                run_dir / PREDICTIONS / CONFIDENCE / f"{case}.npz", cached, pred, most_tumor_slice
            )


def _save_confidence(path: Path, cached, pred, choose) -> None:
    """The URIM confidence M of the slice with the most reference tumour, with its input and masks."""
    halo = cached.halo
    label = cached.label
    centre = None if label is None else np.asarray(label[halo : len(label) - halo])
    predicted = pred.slices.probability > 0.5
    s = choose(centre, fallback=predicted) if centre is not None else choose(predicted)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            image=np.asarray(cached.images[0, s + halo], dtype=np.float32),
            confidence=pred.slices.confidence[s].astype(np.float32),
            probability=pred.slices.probability[s].astype(np.float32),
            reference=(centre[s] == TUMOR) if centre is not None else np.zeros_like(predicted[s]),
            prediction=predicted[s],
            axial=np.int64(cached.mapping.centre_slices[s]),
        )


def evaluate_run(result: CrossvalResult, dataset, test_cases: Sequence[str],
                 started: float | None = None) -> None:
    """Evaluate the pooled predictions and write Tables 1 and 2, the per-fold table and crossval.json
    (with the wall time since `started`)."""
    run_dir = result.run_dir
    types = {c: t for c in test_cases if (t := dataset.tumor_type(c))}
    evaluate_folders(
        run_dir / PREDICTIONS, dataset.root / "labelsTr", run_dir / EVALUATION, types=types, cases=test_cases
    )
    records = read_per_case_csv(run_dir / EVALUATION / "per_case.csv")
    for r in records:
        r["fold"] = dataset.fold(r["case"])
    result.seconds = None if started is None else round(time.time() - started, 1)
    result.records = records
    result.summary = summarize(records)
    result.by_type = summarize_by_type(records)
    result.by_fold = {f"fold {f}": summarize([r for r in records if r["fold"] == f]) for f in result.folds}
    order = type_order(result.by_type)
    m = result.method
    write_text_atomic(run_dir / "table1.md", table1_markdown({m: result.summary}))
    write_text_atomic(run_dir / "table1.csv", table1_csv({m: result.summary}))
    write_text_atomic(run_dir / "table2.md",
                      table2_markdown({m: result.by_type}, types=order, calibration=True))
    write_text_atomic(run_dir / "table2.csv", table2_csv({m: result.by_type}, types=order))
    write_text_atomic(run_dir / "folds.md", table1_markdown(result.by_fold, label="test fold"))
    write_text_atomic(run_dir / "folds.csv", table1_csv(result.by_fold, label="test fold"))
    write_json_atomic(
        run_dir / CROSSVAL_JSON,
        {
            "method": m,
            "model": result.model,
            "folds": result.folds,
            "trained": result.trained,
            "skipped": result.skipped,
            "dataset": str(Path(dataset.root).resolve()),
            "test_cases": list(test_cases),
            "summary": result.summary,
            "by_type": result.by_type,
            "by_fold": result.by_fold,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": result.seconds,
        },
    )


def load_result(run_dir: str | Path) -> CrossvalResult:
    """A finished run's result from its crossval.json and evaluation/per_case.csv (no recomputation)."""
    run_dir = Path(run_dir)
    path = run_dir / CROSSVAL_JSON
    if not path.is_file():
        raise InputError("not a finished cross-validation run (no crossval.json)", run_dir)
    info = json.loads(path.read_text())
    records = read_per_case_csv(run_dir / EVALUATION / "per_case.csv")
    return CrossvalResult(
        run_dir=run_dir,
        method=info["method"],
        folds=list(info["folds"]),
        model=info["model"],
        skipped=list(info["folds"]),
        records=records,
        summary=info["summary"],
        by_type=info["by_type"],
        by_fold=info.get("by_fold", {}),
        seconds=info.get("seconds"),
    )
