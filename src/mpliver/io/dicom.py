"""DICOM CT series: read one (a folder, a study tree or a .zip) into (HU array, Geometry); write one back.

Slices are ordered by their position along the slice normal (ImagePositionPatient · (row × column)), never
by InstanceNumber or file name. The geometry comes from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing, with the slice step measured from the positions; DICOM's LPS frame becomes RAS by negating
x and y. The array is indexed (i, j, k) = (column, row, slice), nibabel's order. Compressed transfer
syntaxes (JPEG 2000, JPEG-LS, ...) decode through pydicom's pixel handlers (pylibjpeg + openjpeg).
Enhanced (multi-frame) CT reads frame by frame through its functional groups.

Archives are not clean: `dicom_scan` recognises files and fills anonymised UIDs, `dicom_stack` drops stray
planes (localizer, reformat) and splits acquisitions, `dicom_study` finds series in a tree or .zip and parses
the `PATH::series=...,group=...` selector. What was dropped is said once per source as an `InputWarning`
(which the command line prints as one `warning:` line on stderr).
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mpliver.errors import InputError, InputWarning
from mpliver.io.atomic import staged_folder
from mpliver.io.checks import MIN_SLICES, check_hu
from mpliver.io.dicom_scan import SliceHeader
from mpliver.io.dicom_stack import (
    AcquisitionGroup,
    AmbiguousSeriesError,
    choose_stack,
    format_table,
    split_acquisitions,
    stack_geometry,
)
from mpliver.io.dicom_study import (
    SELECTOR_SEP,
    parse_source,
    scan_study,
    select_series,
    series_key,
    series_label,
)
from mpliver.io.geometry import Geometry, ras_to_lps

_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class DicomSeries:
    """Headers of one volume, sorted along the slice normal, and the geometry they define (no pixels read).

    `headers` are the files' data sets with empty UIDs filled in (see `dicom_scan`); `slices` the planes
    (a frame index for enhanced CT); `notice` says what was dropped from the series, if anything.
    """

    folder: Path
    series_uid: str
    paths: list[Path]
    headers: list  # pydicom Datasets without pixel data, in slice (k) order
    geometry: Geometry
    slices: list[SliceHeader] = field(default_factory=list)
    notice: str | None = None
    group: str = "1"

    @property
    def multiframe(self) -> bool:
        return any(s.frame is not None for s in self.slices)


def scan_series(folder: str | Path, series_uid: str | None = None, spacing_tol: float = 0.01) -> DicomSeries:
    """Read the headers of one volume, sort them and build the geometry.

    `folder` is a series folder, a study tree or .zip, optionally with a selector (`PATH::series=4,group=2`);
    `series_uid` (UID, number or description text) overrides the selector's series. Stray planes of another
    orientation, size or spacing are dropped with a logged notice; a series of several acquisitions must be
    chosen with `group=`. Refuses, with one line naming the source: several series without a choice, another
    modality than CT, fewer than 3 slices left after dropping, and irregular stacks (see `stack_geometry`).
    """
    path, selector = parse_source(folder)
    if series_uid:
        selector = replace(selector, series=series_uid)
    study = scan_study(path)
    series = select_series(study, selector.series, path)
    kept, notice = choose_stack(series.slices, path)
    normal = np.cross(kept[0].iop[:3], kept[0].iop[3:])
    groups = split_acquisitions(kept, normal)
    group = _choose_group(groups, selector.group, path, series_key(study, series) if len(study) > 1 else None,
                          series, normal)
    if notice and len(group.slices) < MIN_SLICES:
        raise InputError(f"{notice}: fewer than {MIN_SLICES} slices left, no regular stack", path)
    ordered, geometry = stack_geometry(group.slices, path, spacing_tol)
    if notice:
        warnings.warn(f"{path}: {notice}", InputWarning, stacklevel=2)
    return DicomSeries(path, series.uid, [s.path for s in ordered], [s.ds for s in ordered], geometry,
                       ordered, notice, group.label)


def _choose_group(groups: list[AcquisitionGroup], wanted: str | None, path: Path, key: str | None, series,
                  normal) -> AcquisitionGroup:
    if wanted is None and len(groups) == 1:
        return groups[0]
    for g in groups:
        if wanted is not None and g.label == wanted.strip():
            return g
    prefix = f"{path}{SELECTOR_SEP}" + (f"series={key}," if key else "")
    rows = [{"select": f"{prefix}group={g.label}", **g.summary(normal)} for g in groups]
    short = "; ".join(f"group {r['group']}: {r['slices']} slices, z {r['z_mm']} mm"
                      + (f", {r['time']}" if r["time"] else "") for r in rows)
    what = f"group '{wanted}' is not one of them" if wanted else "choose one"
    raise AmbiguousSeriesError(f"series {series_label(series)} holds {len(groups)} acquisitions at the same "
                               f"positions; {what} with {prefix}group=N ({short})", path, format_table(rows))


def _pixels(s: SliceHeader, cache: dict) -> np.ndarray:
    try:
        if s.frame is None:
            return pydicom.dcmread(s.path).pixel_array
        if s.path not in cache:
            cache.clear()  # one multi-frame file at a time
            cache[s.path] = pydicom.dcmread(s.path).pixel_array
        return cache[s.path][s.frame]
    except Exception as exc:  # truncated pixel data, missing decoder, corrupt codestream...
        raise InputError(f"cannot decode pixel data ({type(exc).__name__}: {exc})", s.path) from None


def as_series(source: str | Path | DicomSeries, series_uid: str | None = None) -> DicomSeries:
    """`source` when it is already scanned, else `scan_series(source, series_uid)`: callers that read pixels,
    references and a SEG of one series scan its headers once."""
    return source if isinstance(source, DicomSeries) else scan_series(source, series_uid)


def read_dicom_series(folder: str | Path | DicomSeries, series_uid: str | None = None,
                      ) -> tuple[np.ndarray, Geometry]:
    """Read a DICOM series (see `scan_series` for what `folder` may be, or a scanned `DicomSeries`) into a
    float32 (i, j, k) array of rescaled values (HU for CT) + geometry. Missing RescaleSlope/Intercept count as
    1/0 only when the values then pass `check_hu`."""
    series = as_series(folder, series_uid)
    nx, ny, nz = series.geometry.shape
    out = np.empty((nx, ny, nz), dtype=np.float32)
    cache: dict = {}
    no_rescale = []
    for k, s in enumerate(series.slices):
        pixels = _pixels(s, cache)
        if pixels.shape != (ny, nx):
            raise InputError(f"pixel data has shape {pixels.shape}, expected {(ny, nx)}", s.path)
        if s.slope is None or s.intercept is None:
            no_rescale.append(s.path)
        slope = 1.0 if s.slope is None or s.slope == 0 else s.slope
        intercept = 0.0 if s.intercept is None else s.intercept
        out[:, :, k] = (pixels.astype(np.float32) * slope + intercept).T
    if no_rescale:
        try:
            check_hu(out, series.folder)
        except InputError as exc:
            reason = str(exc).removeprefix(f"{exc.path}: ") if exc.path is not None else str(exc)
            where = series.folder if len(no_rescale) == nz else no_rescale[0]
            raise InputError(f"no RescaleSlope/RescaleIntercept in {len(no_rescale)} of {nz} slice(s) and "
                             f"the stored values are not HU: {reason}", where) from None
    return out, series.geometry


def check_dicom_seg_source(folder: str | Path | DicomSeries) -> DicomSeries:
    """The PV series a DICOM-SEG will refer to, checked before any work: single-frame slices with SOP UIDs
    (from the data set or the file meta) and study/series UIDs (generated when anonymised away)."""
    series = as_series(folder)
    if series.multiframe:
        raise InputError("--dicom-seg needs single-frame PV slices; enhanced (multi-frame) CT is read but a "
                         "SEG of it is not written", series.folder)
    if "" in series_instance_uids(series):
        raise InputError("PV slices have no SOPInstanceUID, neither in the data set nor in the file meta; a "
                         "DICOM-SEG cannot refer to them", series.folder)
    return series


def _ds_str(x: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    s = f"{x:.10g}"
    return s if len(s) <= 16 else f"{x:.6e}"


def _slice_frame(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(LPS affine rows (3, 4), row direction, column direction, slice normal) of a grid DICOM slices can
    represent; ValueError for a grid they cannot (non-perpendicular axes)."""
    lps = ras_to_lps(geometry.affine[:3, :])
    sp = geometry.spacing
    row_dir, col_dir = lps[:, 0] / sp[0], lps[:, 1] / sp[1]
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise ValueError("the i and j axes are not perpendicular; DICOM slices cannot represent this grid")
    normal = np.cross(row_dir, col_dir)
    if abs(abs(float(normal @ lps[:, 2])) / sp[2] - 1) > 1e-4:
        raise ValueError("the k axis is not perpendicular to the slices; DICOM cannot represent this grid")
    return lps, row_dir, col_dir, normal


def _int16_rescale(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(stored int16 values, rescale slope, intercept): 1 HU steps when the range fits int16."""
    values = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("array holds NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if np.rint(lo) >= -32768 and np.rint(hi) <= 32767:
        slope, intercept = 1.0, 0.0
    else:
        slope = (hi - lo) / 65535.0
        intercept = lo + 32768 * slope
    return np.clip(np.rint((values - intercept) / slope), -32768, 32767).astype("<i2"), slope, intercept


def write_dicom_series(
    folder: str | Path,
    array: np.ndarray,
    geometry: Geometry,
    *,
    series_description: str = "mpliver",
    patient_id: str = "MPLIVER",
    patient_name: str = "MPLIVER^PHANTOM",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    image_comments: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write an (i, j, k) HU volume as a single-frame CT series (uncompressed int16, rescale slope/intercept).

    Values are rounded to the stored integer step (1 HU when the range fits int16). The folder is written
    beside its final place and renamed at the end, so no half-written series is left. DICOM orders slices
    along row × column; a geometry whose k axis points the other way (a left-handed affine) reads back with
    k reversed and the matching affine — the same voxels in the world.
    """
    folder = Path(folder)
    array = np.asarray(array)
    if array.ndim != 3 or tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError("output folder is not empty (use overwrite to replace it)", folder)
    lps, row_dir, col_dir, normal = _slice_frame(geometry)
    sp = geometry.spacing
    stored, slope, intercept = _int16_rescale(array)
    study_uid, series_uid = study_uid or generate_uid(), series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    nx, ny, nz = array.shape

    with staged_folder(folder) as tmp:  # the series appears whole, or not at all
        paths = []
        for k in range(nz):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = _CT_IMAGE_STORAGE
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.PatientName, ds.PatientID = patient_name, patient_id
            ds.PatientBirthDate, ds.PatientSex = "", ""
            ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, date, time, "1"
            ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_uid, int(series_number), "CT"
            ds.SeriesDescription = series_description[:64]
            ds.SeriesDate, ds.SeriesTime, ds.ContentDate, ds.ContentTime = date, time, date, time
            ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
            ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "mpliver", "mpliver", "mpliver"
            ds.DeviceSerialNumber = "0"
            ds.KVP = ""
            ds.InstanceNumber, ds.AcquisitionNumber = k + 1, 1
            pos = lps[:, 3] + k * lps[:, 2]
            ds.ImagePositionPatient = [_ds_str(v) for v in pos]
            ds.ImageOrientationPatient = [_ds_str(v) for v in (*row_dir, *col_dir)]
            ds.PixelSpacing = [_ds_str(sp[1]), _ds_str(sp[0])]  # (between rows, between columns)
            ds.SliceThickness = _ds_str(sp[2])
            ds.SliceLocation = _ds_str(float(pos @ normal))
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = ny, nx
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds_str(slope), _ds_str(intercept), "HU"
            ds.BurnedInAnnotation = "NO"
            if image_comments:
                ds.ImageComments = image_comments
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            path = tmp / f"slice_{k:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(folder / path.name)
    return paths


def series_instance_uids(series: DicomSeries) -> Sequence[str]:
    """SOP Instance UIDs of the series' slices in k order (what DICOM-SEG frames refer to)."""
    return [str(h.get("SOPInstanceUID", "")) for h in series.headers]


def study_rows(path: str | Path) -> list[dict[str, str]]:
    """One row per series and acquisition group under `path` (folder tree or .zip), for `mpliver dicom ls`:
    the selector that reads it, identity, slices, spacing, z range, times and contrast hints."""
    source, _ = parse_source(path)
    study = scan_study(source)
    rows = []
    for s in sorted(study.values(), key=lambda s: (s.number is None, s.number or 0, s.description, s.uid)):
        base = {"uid": s.uid + (" (generated)" if s.uid_generated else ""), "number": str(s.number or ""),
                "description": s.description}
        try:
            kept, notice = choose_stack(s.slices, source)
            normal = np.cross(kept[0].iop[:3], kept[0].iop[3:])
            groups = split_acquisitions(kept, normal)
        except InputError as exc:
            rows.append(_row(base, select="", note=str(exc).removeprefix(f"{source}: ")))
            continue
        for g in groups:
            sel = f"{source}{SELECTOR_SEP}series={series_key(study, s)}"
            if len(groups) > 1:
                sel += f",group={g.label}"
            summary = g.summary(normal)
            sp = g.slices[0].spacing
            spacing = f"{sp[1]:.3g}x{sp[0]:.3g}x{summary.pop('step_mm') or '?'}"
            note = notice or ""
            try:
                stack_geometry(list(g.slices), source)
            except InputError as exc:
                note = "; ".join(x for x in (note, str(exc).removeprefix(f"{source}: ")) if x)
            rows.append(_row(base, select=sel, spacing_mm=spacing, **summary, note=note))
    return rows


def _row(base: dict, **values: str) -> dict[str, str]:
    keys = ("select", "uid", "number", "description", "group", "acq", "slices", "spacing_mm", "z_mm", "time",
            "contrast", "note")
    merged = {**base, **values}
    return {k: str(merged.get(k, "")) for k in keys}
