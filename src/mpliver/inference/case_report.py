"""What `predict` reports beside the masks: the liver check, the registration result, the DICOM images a
lesion lies on, and the NIfTI description that carries the research notice (and a failed liver check).

The probability rule (stated in the JSON report as `probability_rule`): the tumour probability is the mean
softmax over the TTA flips and the ensemble members, pasted back onto the PV grid (bilinear) and set to 0
outside the liver mask that the network saw; the label map's tumour is exactly `probability > 0.5` (the same
float32 numbers), and the uncertainty map is computed from the same probability, so it is 0 outside the
liver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from mpliver.data.liver_check import LiverCheck
from mpliver.data.registration import RigidTransform
from mpliver.errors import RESEARCH_NOTICE
from mpliver.io.dicom import DicomSeries, series_instance_uids
from mpliver.io.geometry import Geometry

NIFTI_NOTE = RESEARCH_NOTICE
SYNTHETIC_NOTE = "; synthetic-trained model"
SHORT_NOTE = "mpliver research, not clinical"
NIFTI_DESCRIP_MAX = 79  # the header field holds 80 bytes, NUL-terminated
PROBABILITY_RULE = ("tumour probability = mean softmax over TTA flips and ensemble members, pasted back "
                    "onto the PV grid (bilinear), 0 outside the liver mask")
METRIC_NAMES = {"liver": "Mattes mutual information (SimpleITK, last iteration; lower is better)"}


def nifti_note(synthetic: bool, check: LiverCheck | None = None) -> str:
    """The NIfTI `descrip` text (at most 79 characters): the research notice, the synthetic-training notice,
    and for an implausible liver mask which checks failed (the notice is shortened to make room)."""
    note = NIFTI_NOTE + (SYNTHETIC_NOTE if synthetic else "")
    if check is None or check.ok:
        return note
    flag = f"; implausible liver: {','.join(check.flags)}"
    heads = [note] + [SHORT_NOTE + (tag if synthetic else "") for tag in ("; synthetic", "; synth.")]
    for head in heads:
        if len(head + flag) <= NIFTI_DESCRIP_MAX:
            return head + flag
    return (SHORT_NOTE + flag)[:NIFTI_DESCRIP_MAX]


def registration_summary(transforms: Mapping[str, RigidTransform], liver: np.ndarray,
                         geometry: Geometry) -> dict[str, dict[str, Any]]:
    """Per registered phase: displacement (mm, RAS) of the liver centre, its length, the rotation angle
    (degrees) and the final metric of the optimiser (None for 'none')."""
    centre_ijk = np.asarray(ndimage.center_of_mass(np.asarray(liver, dtype=bool)), dtype=float)
    centre = geometry.index_to_world(centre_ijk[None])[0]
    out: dict[str, dict[str, Any]] = {}
    for name, transform in transforms.items():
        shift = transform.displacement(centre[None])[0]
        out[name] = {
            "method": transform.method,
            "liver_centre_mm": [float(v) for v in centre],
            "displacement_mm": [float(v) for v in shift],
            "displacement_norm_mm": float(np.linalg.norm(shift)),
            "rotation_deg": transform.rotation_degrees(),
            "final_metric": transform.metric,
            "metric": METRIC_NAMES.get(transform.method),
        }
    return out


def dicom_slice_refs(series: DicomSeries) -> list[tuple[int | None, str]]:
    """(InstanceNumber, SOPInstanceUID) of the images of a scanned DICOM series, in array order k (an
    anonymised, empty SOPInstanceUID was already filled from the file meta by the scan)."""
    numbers = [h.get("InstanceNumber") for h in series.headers]
    return [(None if n in (None, "") else int(n), uid)
            for n, uid in zip(numbers, series_instance_uids(series), strict=True)]


def liver_check_report(check: LiverCheck | None, origin: str) -> dict[str, Any] | None:
    """The `liver_check` block of the JSON report: measurements, verdict, reasons and the mask's origin."""
    if check is None:
        return None
    return {**check.to_dict(), "source": origin}
