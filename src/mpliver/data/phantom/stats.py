"""Realism statistics of a labelled multi-phase dataset, measured from the images (not from generator
parameters): per case and phase, median lesion HU − median liver HU, the liver noise SD and, where a
structure map is present (`structuresTr/`, written by the phantom), the median HU of aorta and portal vein,
and how many lesions the phase does not show (|CNR| below FAINT_CNR, `mpliver.data.lesion_contrast`).

Works on any dataset in the case layout with labels: a non-primary phase uses its own label from
`labelsTr_phases/` when present, else the primary label when the grids match, else it is skipped (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from mpliver.data.lesion_contrast import lesion_contrast, robust_sd
from mpliver.errors import DatasetError
from mpliver.io import labels
from mpliver.io.checks import check_hu, check_label_liver
from mpliver.io.labels import LIVER, TUMOR
from mpliver.io.layout import Dataset, check_label_values
from mpliver.io.nifti import read_nifti

_HIGHPASS_SIGMA = (2.0, 2.0, 0.0)  # voxels, in-plane only (slices are thick)
FAINT_CNR = 0.5  # a lesion with |CNR| below this is counted as not shown (the `default` preset's threshold)


def _highpass_gain() -> float:
    """SD of the high-pass residual (x − G*x) of unit white noise: ‖δ − g‖₂ of the discrete kernel."""
    impulse = np.zeros((25, 25, 1))
    impulse[12, 12, 0] = 1.0
    residual = impulse - ndimage.gaussian_filter(impulse, sigma=_HIGHPASS_SIGMA, mode="constant")
    return float(np.sqrt(np.sum(residual**2)))


_GAIN = _highpass_gain()


def liver_noise_sd(image: np.ndarray, liver: np.ndarray) -> float:
    """Noise SD (HU) inside the liver: robust SD (1.4826 × MAD) of the in-plane high-pass residual over the
    liver eroded by two voxels in-plane, corrected for the filter's gain on white noise. The high-pass
    removes the low-frequency parenchymal texture; the MAD ignores vessels and edges."""
    residual = image.astype(np.float32) - ndimage.gaussian_filter(image.astype(np.float32), _HIGHPASS_SIGMA)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    core = ndimage.binary_erosion(liver, structure=structure, iterations=2)
    if core.sum() < 50:
        core = liver
    values = residual[core]
    if values.size < 10:
        return math.nan
    return robust_sd(values) / _GAIN


@dataclass
class PhaseStats:
    """Measured figures of one phase of one case (HU)."""

    lesion_hu: float
    liver_hu: float
    delta_hu: float  # median lesion − median liver
    noise_sd: float
    lesion_voxels: int
    aorta_hu: float = math.nan
    portal_vein_hu: float = math.nan
    lesions: int = 0        # connected lesions large enough to measure
    faint_lesions: int = 0  # of them, those with |CNR| < FAINT_CNR


STRUCTURES_DIR = "structuresTr"
STRUCTURE_CODES = {"aorta": 1, "portal_vein": 2}  # of the phantom's structure map (anatomy.STRUCTURE_CODES)


def _median_where(image: np.ndarray, mask: np.ndarray | None) -> float:
    return float(np.median(image[mask])) if mask is not None and mask.any() else math.nan


def phase_statistics(
    image: np.ndarray, label: np.ndarray, structures: np.ndarray | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> PhaseStats:
    """Medians over the tumour (label 2) and liver (label 1) voxels, the liver noise SD, the medians over
    the aorta and portal-vein voxels of a structure map when given, and the lesions the phase does not show
    (`spacing`: the voxel size in mm, for the ring around each lesion)."""
    tumour, liver = label == TUMOR, label == LIVER
    lesion_hu = _median_where(image, tumour)
    liver_hu = _median_where(image, liver)
    noise = liver_noise_sd(image, liver | tumour) if liver.any() else math.nan
    vessels = {name: _median_where(image, None if structures is None else structures == code)
               for name, code in STRUCTURE_CODES.items()}
    cnr = [c.cnr["x"] for c in lesion_contrast({"x": image}, label, spacing) if np.isfinite(c.cnr["x"])]
    return PhaseStats(lesion_hu, liver_hu, lesion_hu - liver_hu, noise, int(tumour.sum()),
                      vessels["aorta"], vessels["portal_vein"], len(cnr),
                      sum(abs(v) < FAINT_CNR for v in cnr))


def case_statistics(dataset: Dataset, case: str) -> dict[str, PhaseStats | None]:
    """Statistics of every phase of a case (None for a phase with no usable label)."""
    out: dict[str, PhaseStats | None] = {}
    pv_label, pv_geom = read_nifti(dataset.label_path(case))
    pv_label = check_label_values(pv_label, dataset.label_path(case))
    check_label_liver(pv_label, dataset.label_path(case))
    for i, phase in enumerate(dataset.phases):
        image, geom = read_nifti(dataset.image_path(case, i), dtype=np.float32)
        check_hu(image, dataset.image_path(case, i))
        if i == 0:
            label = pv_label
        elif dataset.phase_label_path(case, i).exists():
            label, _ = read_nifti(dataset.phase_label_path(case, i))
            label = check_label_values(label, dataset.phase_label_path(case, i))
        elif geom.same_grid(pv_geom):
            label = pv_label
        else:
            out[phase] = None
            continue
        structures = None
        smap = dataset.root / STRUCTURES_DIR / dataset.image_path(case, i).name
        if smap.exists():
            structures, sgeom = read_nifti(smap)
            if not sgeom.same_grid(geom):
                raise DatasetError("structure map is not on its phase's grid", smap)
        out[phase] = phase_statistics(image, np.asarray(label).astype(np.uint8), structures,
                                      tuple(float(v) for v in geom.spacing))
    return out


def dataset_statistics(
    dataset: Dataset, cases: list[str] | None = None, progress: Callable[[str], None] | None = None
) -> list[dict]:
    """One row per case: {"case", "tumor_type", "phases": {phase: PhaseStats as dict or None}}."""
    rows = []
    for case in cases if cases is not None else dataset.cases("Tr"):
        stats = case_statistics(dataset, case)
        rows.append(
            {
                "case": case,
                "tumor_type": dataset.tumor_type(case) or "unknown",
                "phases": {p: (asdict(s) if s is not None else None) for p, s in stats.items()},
            }
        )
        if progress is not None:
            progress(case)
    return rows


def summarize_by_type(rows: list[dict], phases: list[str]) -> dict[str, dict]:
    """Per tumour type: number of cases and, per phase, the median over cases of Δ (lesion − liver), of the
    lesion and liver HU and of the liver noise SD, and the % of lesions the phase does not show; "all" pools
    every case."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["tumor_type"], []).append(row)
    groups["all"] = list(rows)
    out = {}
    for ttype, members in groups.items():
        entry: dict = {"cases": len(members)}
        for phase in phases:
            vals = [m["phases"].get(phase) for m in members]
            vals = [v for v in vals if v is not None]
            entry[phase] = {
                key: _nanmedian([v[key] for v in vals])
                for key in ("delta_hu", "lesion_hu", "liver_hu", "noise_sd")
            }
            counted = sum(v.get("lesions", 0) for v in vals)
            faint = sum(v.get("faint_lesions", 0) for v in vals)
            entry[phase]["faint_pct"] = 100.0 * faint / counted if counted else math.nan
        out[ttype] = entry
    return out


def _nanmedian(values: list[float]) -> float:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(np.median(arr)) if arr.size else math.nan


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def type_order(summary: dict[str, dict]) -> list[str]:
    """The five known types first, then any others, then "all"."""
    return labels.type_order(t for t in summary if t != "all") + (["all"] if "all" in summary else [])


COHORT_COLUMNS = (("Δ", "delta_hu", True), ("lesion", "lesion_hu", False), ("liver", "liver_hu", False),
                  ("noise SD", "noise_sd", False), ("faint %", "faint_pct", False))


def cohort_rows(summary: dict[str, dict], phases: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-type table of `summarize_by_type` output, as text cells: per type, the
    number of cases and Δ, lesion and liver HU, noise SD and % faint lesions per phase ("-" where nothing
    was measured)."""
    header = ["type", "cases"] + [f"{name} {p}" for name, _key, _signed in COHORT_COLUMNS for p in phases]
    rows = []
    for ttype in type_order(summary):
        s = summary[ttype]
        cells = [_fmt(s[p][key], signed) for _name, key, signed in COHORT_COLUMNS for p in phases]
        rows.append([ttype, str(s["cases"]), *cells])
    return header, rows
