"""Evaluate a folder of predicted label maps against reference label maps (`mpliver evaluate`, method.md §5).

Both folders hold `CASE.nii.gz` label maps of the layout convention (0 background, 1 liver, 2 tumour); the
tumour is label 2 in both. The spacing comes from the reference header, and the prediction must lie on the
reference grid. Outputs in OUT_DIR, replaced together as one set:
`per_case.csv`, `summary.json` (flat), `summary.md`, and `per_type.csv`/`per_type.md` when tumour types are
known (from `types`, from `dataset`, or from a `dataset.json` beside or inside LABEL_DIR).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.errors import InputError
from mpliver.evaluation.aggregate import summarize, summarize_by_type
from mpliver.evaluation.metrics import case_metrics
from mpliver.evaluation.tables import LESION_METRICS, SIX_METRICS, csv_text, table1_csv, table1_markdown
from mpliver.io.atomic import check_writable, commit_set, make_staging, write_json_atomic, write_text_atomic
from mpliver.io.checks import check_same_grid
from mpliver.io.labels import TUMOR
from mpliver.io.layout import FILE_ENDING, Dataset, check_label_values, normalize_tumor_type
from mpliver.io.nifti import read_nifti

PER_CASE_COLUMNS: tuple[str, ...] = (
    "case", "tumor_type", "dice", "voe", "rvd", "assd", "rmsd",
    "lesion_recall", "lesion_precision", "lesion_f1",
    "n_ref_lesions", "n_pred_lesions", "n_ref_detected", "n_pred_hits",
    "ref_voxels", "pred_voxels", "intersection_voxels", "missing_prediction",
)
_INT_COLUMNS = {"n_ref_lesions", "n_pred_lesions", "n_ref_detected", "n_pred_hits",
                "ref_voxels", "pred_voxels", "intersection_voxels", "missing_prediction"}
_TEXT_COLUMNS = {"case", "tumor_type"}


class EvaluationWarning(UserWarning):
    """Something the user should know that does not stop the evaluation (e.g. extra prediction files)."""


def _case_ids(folder: Path) -> list[str]:
    return sorted(p.name[: -len(FILE_ENDING)] for p in folder.glob(f"*{FILE_ENDING}")
                  if not p.name.startswith("."))


def _check_folder_role(folder: Path, role: str) -> None:
    """Refuse a folder of images (CASE_0000.nii.gz, imagesTr/) as labels or predictions, and a folder of
    `mpliver predict` outputs as the labels: most often the two arguments were swapped or mixed up."""
    channels = sorted(p for p in folder.glob(f"*_000[0-9]{FILE_ENDING}") if not p.name.startswith("."))
    # CASE_0000.nii.gz names a channel, but also a case of a cohort numbered like PHANTOM_0000: a CT image
    # holds negative values (air), a label map never does
    images = bool(channels) and float(np.min(read_nifti(channels[0])[0])) < 0
    if images or folder.name in ("imagesTr", "imagesTs"):
        example = f" ({channels[0].name}, ...)" if channels else ""
        raise InputError(f"this folder holds images{example}, not {role}s: the call is `mpliver evaluate "
                         "PRED_DIR LABEL_DIR` (labels are labelsTr/CASE.nii.gz)", folder)
    predicted = any(folder.glob(f"*_uncertainty{FILE_ENDING}")) or any(folder.glob("*_lesions.json"))
    if role == "label" and predicted:
        raise InputError("this folder holds `mpliver predict` outputs, not reference labels: were PRED_DIR "
                         "and LABEL_DIR swapped? The call is `mpliver evaluate PRED_DIR LABEL_DIR`", folder)


def pair_cases(pred_dir: str | Path, label_dir: str | Path, missing_as_empty: bool = False,
               cases: Sequence[str] | None = None) -> list[tuple[str, Path, Path | None]]:
    """(case, label path, prediction path or None) for every reference label (or only `cases`), sorted.

    A missing prediction is an InputError naming the case, unless `missing_as_empty` (then None: an empty
    prediction, flagged in the output). Predictions without a label are ignored with an EvaluationWarning;
    with `cases`, predictions of other cases are ignored silently.
    """
    pred_dir, label_dir = Path(pred_dir), Path(label_dir)
    for folder, what in ((pred_dir, "prediction"), (label_dir, "label")):
        if not folder.is_dir():
            raise InputError(f"{what} folder not found", folder)
    _check_folder_role(label_dir, "label")
    _check_folder_role(pred_dir, "prediction")
    labels = _case_ids(label_dir)
    if not labels:
        raise InputError(f"no label maps (*{FILE_ENDING}) found", label_dir)
    if cases is not None:
        unknown = sorted(set(cases) - set(labels))
        if unknown:
            raise InputError(f"no label for case {unknown[0]}", label_dir / f"{unknown[0]}{FILE_ENDING}")
        labels = sorted(set(cases))
    preds = set(_case_ids(pred_dir))
    missing = [c for c in labels if c not in preds]
    if missing and not missing_as_empty:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"no prediction for case {missing[0]}{more}; use --missing-as-empty to score "
                         "missing predictions as empty", pred_dir / f"{missing[0]}{FILE_ENDING}")
    extra = sorted(preds - set(labels))
    if extra and cases is None:
        warnings.warn(f"{pred_dir}: ignoring {len(extra)} prediction(s) without a label: "
                      f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}", EvaluationWarning,
                      stacklevel=2)
    return [(c, label_dir / f"{c}{FILE_ENDING}",
             pred_dir / f"{c}{FILE_ENDING}" if c in preds else None) for c in labels]


def evaluate_case_files(label_path: str | Path, pred_path: str | Path | None,
                        foreground: Sequence[int] = (TUMOR,)) -> dict[str, Any]:
    """The per-case record of one (label, prediction) pair; `pred_path=None` scores an empty prediction.

    `foreground`: the label values that make the mask in both maps: (2,) for the tumour (default), (1, 2)
    for the whole liver (stage 1).
    """
    label, geom = read_nifti(label_path)
    ref = np.isin(check_label_values(label, label_path), foreground)
    if pred_path is None:
        pred = np.zeros_like(ref)
    else:
        pred_map, pred_geom = read_nifti(pred_path)
        check_same_grid(geom, pred_geom, pred_path, what="prediction",
                        ref_name=f"its label {Path(label_path).name}")
        pred = np.isin(check_label_values(pred_map, pred_path), foreground)
    record = case_metrics(ref, pred, geom.spacing)
    record["missing_prediction"] = int(pred_path is None)
    return record


def resolve_types(label_dir: str | Path, dataset: str | Path | None = None) -> dict[str, str] | None:
    """Case -> tumour type from `dataset`'s dataset.json, or from one found at LABEL_DIR/.. or LABEL_DIR.

    None when no types are recorded. An explicit `dataset` must be a valid dataset folder; a dataset.json
    found by itself is only read for its `cases` table (it may belong to another tool, e.g. nnU-Net).
    """
    if dataset is not None:
        table = Dataset(dataset).case_table
    else:
        label_dir = Path(label_dir).resolve()
        found = next((d / "dataset.json" for d in (label_dir.parent, label_dir)
                      if (d / "dataset.json").is_file()), None)
        if found is None:
            return None
        try:
            table = json.loads(found.read_text()).get("cases") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return None
    types = {str(case): normalize_tumor_type(info["tumor_type"], allow_other=True)
             for case, info in table.items()
             if isinstance(info, Mapping) and isinstance(info.get("tumor_type"), str) and info["tumor_type"]}
    return types or None


def per_case_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """The per_case.csv text: PER_CASE_COLUMNS, undefined values as empty cells."""
    return csv_text(PER_CASE_COLUMNS, [[r.get(c) for c in PER_CASE_COLUMNS] for r in records])


def read_per_case_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a per_case.csv back into records (numbers as float/int, empty cells as nan)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("per-case table not found", path)
    records = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("case", "dice", "ref_voxels", "pred_voxels", "intersection_voxels")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"not a per-case table: missing column(s) {missing}", path)
        for row in reader:
            rec: dict[str, Any] = {}
            for k, v in row.items():
                if k in _TEXT_COLUMNS:
                    rec[k] = v
                elif v == "":
                    rec[k] = math.nan
                elif k in _INT_COLUMNS:
                    rec[k] = int(v)
                else:  # a metric, or a column added by a later tool (e.g. fold): a number where it is one
                    try:
                        rec[k] = float(v)
                    except ValueError:
                        rec[k] = v
            records.append(rec)
    return records


def evaluate_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    out_dir: str | Path,
    types: Mapping[str, str] | None = None,
    dataset: str | Path | None = None,
    missing_as_empty: bool = False,
    cases: Sequence[str] | None = None,
    foreground: Sequence[int] = (TUMOR,),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every case of LABEL_DIR (or only `cases`) against PRED_DIR, write the tables to OUT_DIR, and
    return the flat summary.

    `types` (case -> tumour type) overrides the dataset.json lookup; `foreground` as in
    `evaluate_case_files`; `progress` is called with each case id once it is scored.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", out)
    pairs = pair_cases(pred_dir, label_dir, missing_as_empty, cases)
    check_writable(out)
    if types is None:
        types = resolve_types(label_dir, dataset)
    records = []
    for case, label_path, pred_path in pairs:
        record: dict[str, Any] = {"case": case, "tumor_type": (types or {}).get(case, "")}
        record.update(evaluate_case_files(label_path, pred_path, foreground))
        records.append(record)
        if progress is not None:
            progress(case)
    summary = summarize(records)
    summary["n_missing_predictions"] = sum(r["missing_prediction"] for r in records)

    metrics = SIX_METRICS + LESION_METRICS
    stage = make_staging(out / "evaluation")  # the tables are replaced as one set: all new, or all earlier
    try:
        write_text_atomic(stage / "per_case.csv", per_case_csv(records))
        write_json_atomic(stage / "summary.json", summary)
        write_text_atomic(stage / "summary.md", table1_markdown({"prediction": summary}, metrics=metrics))
        if types:
            by_type = summarize_by_type(records)
            csv_text = table1_csv(by_type, label="tumor_type", metrics=metrics)
            md_text = table1_markdown(by_type, label="tumour type", metrics=metrics)
            write_text_atomic(stage / "per_type.csv", csv_text)
            write_text_atomic(stage / "per_type.md", md_text)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    commit_set(stage, out, sorted(p.name for p in stage.iterdir()))
    if not types:  # never leave a per-type table of an earlier run beside this run's results
        for name in ("per_type.csv", "per_type.md"):
            (out / name).unlink(missing_ok=True)
    return summary
