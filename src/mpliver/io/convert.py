"""Turn per-phase studies (DICOM series folders or NIfTI files; DICOM-SEG or NIfTI labels) into the layout.

Every case is read and checked completely (HU values, label values, label on the PV grid) into a staging
folder beside the dataset; only when all cases succeeded are the files moved into place and `dataset.json`
written last, so a failure leaves the dataset as it was. ART keeps its own grid (docs/method.md §2).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from mpliver.errors import DatasetError, InputError
from mpliver.io.atomic import check_writable, make_staging, normal_permissions, swap_in, write_json_atomic
from mpliver.io.checks import check_hu, check_label_liver, check_slices, warn_lost_header
from mpliver.io.dicom import read_dicom_series
from mpliver.io.dicom_seg import LABEL_SYNONYMS, read_dicom_seg
from mpliver.io.dicom_study import check_not_single_file, is_dicom_source
from mpliver.io.geometry import Geometry
from mpliver.io.labels import DEFAULT_PHASES, PRIMARY_PHASE
from mpliver.io.layout import (
    FILE_ENDING,
    Dataset,
    check_case_table,
    check_label_values,
    normalize_tumor_type,
    write_dataset_json,
)
from mpliver.io.nifti import read_nifti, write_nifti
from mpliver.io.resample import labels_to_grid, same_voxels

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_COLUMNS = "case,pv,art[,label][,tumor_type]"


@dataclass
class CaseSource:
    """Where one case comes from: a path per phase (PV first), an optional label and tumour type."""

    case_id: str
    phases: dict[str, Path]
    label: Path | None = None
    tumor_type: str | None = None
    series_uids: dict[str, str] = field(default_factory=dict)  # phase -> SeriesInstanceUID in a mixed folder


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def read_volume(path: str | Path, series_uid: str | None = None) -> tuple[np.ndarray, Geometry]:
    """Read one phase: a DICOM series folder (`series_uid` picks one of several) or a NIfTI file.

    Returns float32 values and the geometry.
    """
    path = Path(path)
    if is_dicom_source(path):  # a folder, a study .zip, or PATH::series=...,group=...
        return read_dicom_series(path, series_uid)
    if not path.exists():
        raise InputError("file or folder not found", path)
    if is_nifti(path):
        array, geom = read_nifti(path, dtype=np.float32)
        warn_lost_header(geom, path)
        return array, geom
    check_not_single_file(path)
    raise InputError("expected a DICOM series folder, a .zip of a study or a NIfTI file (.nii / .nii.gz)",
                     path)


def _find_seg(path: Path) -> Path | None:
    """`path` if it is a DICOM-SEG file, or the single DICOM-SEG inside a folder; None if there is none."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file()
                                                 and not p.name.startswith("."))
    found = []
    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except Exception:
            if path.is_file():
                raise InputError("unreadable label file: neither NIfTI nor DICOM", p) from None
            continue
        if str(ds.get("SOPClassUID", "")) == _SEG_STORAGE:
            found.append(p)
    if path.is_dir() and len(found) > 1:
        raise InputError(f"{len(found)} DICOM-SEG files in the label folder; give one file", path)
    return found[0] if found else None


def remap_labels(label: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Map label values (e.g. TotalSegmentator's liver 5 -> 1); values not in `mapping` become background."""
    out = np.zeros(label.shape, np.uint8)
    for src, dst in mapping.items():
        out[label == src] = dst
    return out


def read_label(path: str | Path, pv_path: Path, pv_geometry: Geometry, resample: bool = False,
               label_map: Mapping[int, int] | None = None, pv_series_uid: str | None = None,
               label_mismatch_ok: bool = False) -> np.ndarray:
    """Read a label (NIfTI, or DICOM-SEG with segments named liver / tumour) onto the PV grid as uint8 0/1/2.

    A NIfTI label on the same voxels as PV in another axis order or direction is reoriented exactly. A label
    on a different grid is refused unless `resample` (nearest neighbour through world coordinates).
    `label_map` first maps a NIfTI label's values (others become 0). A DICOM-SEG of another frame of
    reference, series or patient than the PV series is refused unless `label_mismatch_ok`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("label file not found", path)
    if is_nifti(path):
        label, geom = read_nifti(path)
        if label_map:
            label = remap_labels(label, label_map)
        label = check_label_values(label, path)
        check_label_liver(label, path)
        if pv_geometry.same_grid(geom):
            return label
        if same_voxels(geom, pv_geometry):  # the PV voxels in another axis order or direction: exact
            return labels_to_grid(label, geom, pv_geometry)
        if not resample:
            raise InputError(
                f"label is not on the PV grid (shape {geom.shape} vs {pv_geometry.shape}, spacing "
                f"{np.round(geom.spacing, 3).tolist()} vs {np.round(pv_geometry.spacing, 3).tolist()}); "
                "pass --resample-label to resample it (nearest neighbour)", path)
        return labels_to_grid(label, geom, pv_geometry)
    seg = _find_seg(path)
    if seg is None:
        raise InputError("label is neither NIfTI nor a DICOM-SEG", path)
    if not is_dicom_source(pv_path):
        raise InputError("a DICOM-SEG label needs the PV phase as a DICOM series folder", seg)
    label, geom, _ = read_dicom_seg(seg, pv_path, series_uid=pv_series_uid, label_map=LABEL_SYNONYMS,
                                    allow_mismatch=label_mismatch_ok)
    if not pv_geometry.same_grid(geom):  # same folder, so this only fails on a programming error
        raise InputError("DICOM-SEG grid differs from the PV series", seg)
    label = check_label_values(label, seg)
    check_label_liver(label, seg)
    return label


def read_cases_csv(csv_path: str | Path, allow_other_types: bool = False) -> list[CaseSource]:
    """Read `case,pv,art[,label][,tumor_type]` rows (header required; paths relative to the CSV's folder)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError("CSV file not found", csv_path)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [c for c in ("case", "pv", "art") if c not in fields]
        if missing:
            raise InputError(f"missing column(s) {missing}; expected {_COLUMNS}", csv_path)
        unknown = [c for c in fields if c not in ("case", "pv", "art", "label", "tumor_type")]
        if unknown:
            raise InputError(f"unknown column(s) {unknown}; expected {_COLUMNS}", csv_path)
        out = []
        for n, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            case = row.get("case", "")
            if not case:
                raise InputError(f"line {n}: empty case id", csv_path)
            phases = {}
            for name in DEFAULT_PHASES:
                cell = row.get(name.lower(), "")
                if not cell:
                    raise InputError(f"line {n}: case {case} is missing phase {name}", csv_path)
                phases[name] = (csv_path.parent / cell).resolve()
            label = (csv_path.parent / row["label"]).resolve() if row.get("label") else None
            ttype = row.get("tumor_type") or None
            if ttype is not None:
                ttype = normalize_tumor_type(ttype, allow_other_types, csv_path)
            out.append(CaseSource(case, phases, label, ttype))
    if not out:
        raise InputError("no cases in the CSV", csv_path)
    return out


def _dataset_state(out: Path, phases: Sequence[str]) -> str:
    """'new' (absent or empty), 'append' (a compatible dataset) or 'foreign' (anything else)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return "new"
    if not out.is_dir():
        return "foreign"
    try:
        ds = Dataset(out)
    except DatasetError:
        return "foreign"
    return "append" if ds.phases == list(phases) else "foreign"


def compact_hu(array: np.ndarray) -> np.ndarray:
    """int16 when the values are whole numbers in range (half the disk space), float32 otherwise."""
    if array.size and np.all(array == np.round(array)) and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16)
    return array.astype(np.float32)


def _write_case(stage: Path, source: CaseSource, resample_label: bool,
                label_map: Mapping[int, int] | None, label_mismatch_ok: bool = False) -> None:
    """Read, check and write one case into the staging folder."""
    vols = {}
    for name, path in source.phases.items():
        array, geom = read_volume(path, source.series_uids.get(name))
        check_hu(array, path)
        check_slices(geom, path, f"the {name} phase")
        vols[name] = (array, geom)
    pv_array, pv_geom = vols[PRIMARY_PHASE]
    split = "Tr" if source.label is not None else "Ts"
    for i, (_name, (array, geom)) in enumerate(vols.items()):
        path = stage / f"images{split}" / f"{source.case_id}_{i:04d}{FILE_ENDING}"
        write_nifti(path, compact_hu(array), geom)
    if source.label is not None:
        label = read_label(source.label, source.phases[PRIMARY_PHASE], pv_geom, resample_label, label_map,
                           source.series_uids.get(PRIMARY_PHASE), label_mismatch_ok)
        write_nifti(stage / "labelsTr" / f"{source.case_id}{FILE_ENDING}", label, pv_geom)


def convert_cases(
    sources: Sequence[CaseSource],
    out: str | Path,
    *,
    overwrite: bool = False,
    resample_label: bool = False,
    label_map: Mapping[int, int] | None = None,
    progress: Callable[[str], None] | None = None,
    label_mismatch_ok: bool = False,
) -> list[str]:
    """Convert cases into the dataset folder `out` (created, or appended to when it is a PV/ART dataset).

    Cases with a label go to imagesTr/labelsTr, cases without to imagesTs. Refused unless `overwrite`: a
    folder that holds something other than a PV/ART dataset (then replaced as a whole) and case ids that
    already exist (then replaced). `label_map` remaps NIfTI label values (e.g. {5: 1} for TotalSegmentator's
    liver). `label_mismatch_ok` accepts a DICOM-SEG of another frame of reference, series or patient than
    its PV series. Returns the converted case ids.
    """
    out = Path(out)
    if not sources:
        raise InputError("no cases to convert", out)
    ids = [s.case_id for s in sources]
    for s in sources:
        if not _CASE_ID.match(s.case_id):
            raise InputError(f"invalid case id '{s.case_id}' (letters, digits, '_' and '-' only)", out)
        if list(s.phases)[:2] != list(DEFAULT_PHASES):
            raise InputError(f"case {s.case_id}: phases must be PV then ART, got {list(s.phases)}", out)
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise InputError(f"duplicate case id(s) {dupes}", out)
    phases = list(sources[0].phases)
    state = _dataset_state(out, phases)
    if state == "foreign" and not overwrite:
        raise DatasetError("output folder already holds something other than a PV/ART dataset in the case "
                           "layout; choose another folder or pass --overwrite to replace it", out)
    if state == "append":
        check_case_table(Dataset(out))
        existing = set(Dataset(out).cases("Tr")) | set(Dataset(out).cases("Ts"))
        clash = sorted(existing & set(ids))
        if clash and not overwrite:
            raise DatasetError(f"case(s) {clash[:5]} already in the dataset; pass --overwrite to replace "
                               "them", out)

    check_writable(out)  # a read-only or full disk is found before the first case is read
    stage = make_staging(out)
    try:
        for source in sources:
            _write_case(stage, source, resample_label, label_map, label_mismatch_ok)
            if progress is not None:
                progress(source.case_id)
        types = {s.case_id: s.tumor_type for s in sources}
        if state == "append":
            _merge_into(stage, out, ids)
            _update_dataset_json(out, types)
        else:
            cases = {c: ({"tumor_type": t} if t else {}) for c, t in types.items()}
            n_tr = len(list((stage / "labelsTr").glob(f"*{FILE_ENDING}")))
            write_dataset_json(stage, phases, n_tr, cases=cases, extra={"name": out.name})
            swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ids


def _merge_into(stage: Path, out: Path, ids: Sequence[str]) -> None:
    """Move staged case files into an existing dataset, first removing older files of the same cases."""
    wanted = set(ids)
    for sub in ("imagesTr", "imagesTs", "labelsTr", "labelsTr_phases"):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob(f"*{FILE_ENDING}"):
                stem = p.name[: -len(FILE_ENDING)]
                # labelsTr/CASE.nii.gz; every other folder holds CASE_XXXX.nii.gz
                case = stem if sub == "labelsTr" else (stem[:-5] if re.fullmatch(r".+_\d{4}", stem) else None)
                if case in wanted:
                    p.unlink()
    normal_permissions(stage)
    for p in sorted(stage.rglob(f"*{FILE_ENDING}")):
        target = out / p.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)


def _update_dataset_json(out: Path, types: dict[str, str | None]) -> None:
    """Update numTraining and the cases table of an existing dataset.json, keeping its other keys."""
    ds = Dataset(out)
    meta = dict(ds.meta)
    cases = dict(meta.get("cases") or {})
    for case, ttype in types.items():
        entry = {}  # a replaced case loses its old type and fold
        if ttype:
            entry["tumor_type"] = ttype
        cases[case] = entry
    meta["cases"] = cases
    meta["numTraining"] = len(list((out / "labelsTr").glob(f"*{FILE_ENDING}")))
    mode = (out / "dataset.json").stat().st_mode & 0o777
    write_json_atomic(out / "dataset.json", meta)
    os.chmod(out / "dataset.json", mode)


def next_case_id(out: str | Path, prefix: str = "case_") -> str:
    """The first `case_NNN` id not yet used in the dataset at `out` (case_001 for a new dataset)."""
    out = Path(out)
    used: set[str] = set()
    if (out / "dataset.json").exists():
        try:
            ds = Dataset(out)
            used = set(ds.cases("Tr")) | set(ds.cases("Ts"))
        except DatasetError:
            pass
    n = 1
    while f"{prefix}{n:03d}" in used:
        n += 1
    return f"{prefix}{n:03d}"
