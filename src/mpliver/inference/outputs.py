"""What a prediction gives (`PredictionResult`) and how its files are written (`write_outputs`): the label
map, the uncertainty map, the lesion report and, when asked for, the probability map and a DICOM-SEG, moved
into place as one set."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.data.liver_check import LiverCheck
from mpliver.data.registration import RigidTransform
from mpliver.errors import RESEARCH_NOTICE, InputError
from mpliver.evaluation.lesion_report import notice_path, write_lesion_report
from mpliver.inference.case_report import (
    PROBABILITY_RULE,
    liver_check_report,
    nifti_note,
    registration_summary,
)
from mpliver.io import nifti  # the module, not the function: a test replaces nifti.write_nifti
from mpliver.io.atomic import commit_set, make_staging
from mpliver.io.dicom import DicomSeries
from mpliver.io.dicom_seg import write_dicom_seg
from mpliver.io.geometry import Geometry


@dataclass
class PredictionResult:
    """One study on its PV grid: `label` uint8 (0/1/2), `uncertainty` and `probability` float32 (both 0
    outside the liver), the liver mask used and its check, the lesion table, the transforms of the
    registered phases and per-stage timings."""

    case_id: str
    label: np.ndarray
    uncertainty: np.ndarray
    probability: np.ndarray
    liver: np.ndarray
    lesions: list[dict[str, Any]]
    geometry: Geometry
    synthetic: bool
    timings: dict[str, float] = field(default_factory=dict)
    transforms: dict[str, RigidTransform] = field(default_factory=dict)
    pv_dicom: DicomSeries | None = None  # the scanned PV series, when PV came from DICOM (for DICOM-SEG)
    liver_check: LiverCheck | None = None
    liver_origin: str = ""
    models: list[str] = field(default_factory=list)  # the bundle(s) that made the prediction
    tumor_rule: str = "probability > 0.5"  # how the label's tumour came from the probability (`Postprocess`)

    def report_meta(self) -> dict[str, Any]:
        """What the JSON lesion report gains beside the lesions: liver check, registration, the rule."""
        return {"liver_check": liver_check_report(self.liver_check, self.liver_origin),
                "registration": registration_summary(self.transforms, self.liver, self.geometry),
                "probability_rule": f"{PROBABILITY_RULE}; label tumour = {self.tumor_rule}",
                "models": list(self.models)}


def output_paths(out_dir: str | Path, case_id: str, dicom_seg: bool = False,
                 probabilities: bool = False) -> dict[str, Path]:
    """The files `write_outputs` writes for a case (the probability map and DICOM-SEG only when asked for)."""
    out = Path(out_dir)
    paths = {"label": out / f"{case_id}.nii.gz", "uncertainty": out / f"{case_id}_uncertainty.nii.gz",
             "lesions_csv": out / f"{case_id}_lesions.csv", "lesions_json": out / f"{case_id}_lesions.json"}
    paths["lesions_notice"] = notice_path(paths["lesions_csv"])
    if probabilities:
        paths["probability"] = out / f"{case_id}_probability.nii.gz"
    if dicom_seg:
        paths["dicom_seg"] = out / f"{case_id}_seg.dcm"
    return paths


def write_outputs(result: PredictionResult, out_dir: str | Path, dicom_seg: bool = False,
                  meta: dict[str, Any] | None = None, probabilities: bool = False) -> dict[str, Path]:
    """Write the label map, uncertainty map and lesion report (and the tumour probability with
    `probabilities`, a DICOM-SEG when PV was DICOM and `dicom_seg`) as one set: all into a staging folder
    beside them, then moved into place together, so a failure (full disk, read-only) leaves the earlier set
    or nothing. Adds `writing` to `result.timings`. Returns the paths written."""
    start = time.perf_counter()
    if dicom_seg and result.pv_dicom is None:
        raise InputError(f"case {result.case_id}: --dicom-seg needs the PV phase as a DICOM series folder")
    out = Path(out_dir)
    paths = output_paths(out, result.case_id, dicom_seg, probabilities)
    stage = make_staging(out / result.case_id)
    staged = output_paths(stage, result.case_id, dicom_seg, probabilities)
    note = nifti_note(result.synthetic, result.liver_check)
    try:
        nifti.write_nifti(staged["uncertainty"], result.uncertainty.astype(np.float32), result.geometry, note)
        if probabilities:
            nifti.write_nifti(staged["probability"], result.probability.astype(np.float32), result.geometry,
                              note)
        write_lesion_report(staged["lesions_csv"], staged["lesions_json"], result.lesions, result.case_id,
                            result.synthetic, {"spacing_mm": result.geometry.spacing.tolist(),
                                               **result.report_meta(), **(meta or {})},
                            liver_volume_ml=None if result.liver_check is None
                            else result.liver_check.volume_ml)
        nifti.write_nifti(staged["label"], result.label.astype(np.uint8), result.geometry, note)
        if dicom_seg:
            write_dicom_seg(staged["dicom_seg"], result.label, result.pv_dicom, algorithm="mpliver",
                            series_description=RESEARCH_NOTICE)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    # the label map last: with the others, it marks a finished case for the batch mode's skip
    commit_set(stage, out, [p.name for key, p in paths.items() if key != "label"] + [paths["label"].name])
    result.timings["writing"] = time.perf_counter() - start
    return paths
