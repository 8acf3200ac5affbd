"""DICOM CT series: read a folder of single-frame slices into (HU array, Geometry), and write one back.

Slices are ordered by their position along the slice normal (ImagePositionPatient · (row × column)), never
by InstanceNumber or file name. The geometry comes from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing, with the slice step measured from the positions; DICOM's LPS frame becomes RAS by negating
x and y. The array is indexed (i, j, k) = (column, row, slice), nibabel's order. Compressed transfer
syntaxes (JPEG 2000, JPEG-LS, ...) decode through pydicom's pixel handlers (pylibjpeg + openjpeg).
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpliver.errors import InputError
from mpliver.io.geometry import Geometry
from mpliver.io.staging import make_staging, swap_in

# Files that are never slices of a series (exports often carry them beside the images).
_SKIP_SUFFIXES = {".txt", ".json", ".md", ".xml", ".csv", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".zip",
                  ".log", ".html", ".pdf", ".yaml", ".yml"}
_SKIP_NAMES = {"dicomdir", "thumbs.db", ".ds_store", "version", "license", "readme"}
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS for 3-vectors


@dataclass
class DicomSeries:
    """Headers of one series, sorted along the slice normal, and the geometry they define (no pixels read)."""

    folder: Path
    series_uid: str
    paths: list[Path]
    headers: list  # pydicom Datasets without pixel data, in slice (k) order
    geometry: Geometry


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower() not in _SKIP_NAMES
        and p.suffix.lower() not in _SKIP_SUFFIXES
    )


def _read_header(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        _ = ds.get("SOPClassUID"), ds.get("Rows")  # force parsing of the elements we need
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"unreadable or truncated DICOM file ({type(exc).__name__}: {exc})", path) from None
    return ds


def list_series(folder: str | Path) -> dict[str, list[Path]]:
    """Image series in `folder` (not recursive): SeriesInstanceUID -> files. DICOM-SEG objects are skipped."""
    return {uid: [p for p, _ in items] for uid, items in _scan_headers(Path(folder)).items()}


def _scan_headers(folder: Path) -> dict[str, list[tuple[Path, object]]]:
    if not folder.is_dir():
        raise InputError("DICOM series folder not found", folder)
    out: dict[str, list[tuple[Path, object]]] = {}
    for path in _candidate_files(folder):
        ds = _read_header(path)
        sop = ds.get("SOPClassUID") or ds.get("file_meta", {}).get("MediaStorageSOPClassUID")
        if sop is not None and str(sop) != "" and "Image" not in getattr(sop, "name", ""):
            continue  # segmentations, structured reports, RT structures... are not slices
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError("multi-frame (enhanced) DICOM images are not supported; export single-frame "
                             "slices", path)
        if "Rows" not in ds or "PixelSpacing" not in ds:
            raise InputError("unreadable or truncated DICOM file (image attributes missing)", path)
        out.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    return out


def _series_summary(series: dict[str, list[tuple[Path, object]]]) -> str:
    parts = []
    for uid, items in sorted(series.items()):
        desc = str(items[0][1].get("SeriesDescription", "")).strip()
        parts.append(f"{uid or '(no SeriesInstanceUID)'} ({len(items)} files{', ' + desc if desc else ''})")
    return "; ".join(parts)


def _vec(ds, name: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(name)
    if value is None or len(value) != n:
        raise InputError(f"missing or malformed {name}; cannot build the slice geometry", path)
    return np.asarray([float(v) for v in value], dtype=np.float64)


def scan_series(folder: str | Path, series_uid: str | None = None, spacing_tol: float = 0.01) -> DicomSeries:
    """Read the headers of the one series in `folder` (or of `series_uid`), sort them and build the geometry.

    Refuses, with one line naming the folder: several series without `series_uid`, multi-frame files, slices
    that differ in size or orientation, duplicate positions, missing slices, non-uniform spacing (relative
    tolerance `spacing_tol`) and slices not stacked along their normal (gantry tilt).
    """
    folder = Path(folder)
    series = _scan_headers(folder)
    if not series:
        subdirs = [p.name for p in folder.iterdir() if p.is_dir()]
        hint = f" (it has sub-folders {subdirs[:5]}: give the folder of one series)" if subdirs else ""
        raise InputError(f"no DICOM image files found{hint}", folder)
    if series_uid is None:
        if len(series) > 1:
            raise InputError(f"{len(series)} series found, choose one with a series UID: "
                             f"{_series_summary(series)}", folder)
        series_uid = next(iter(series))
    elif series_uid not in series:
        raise InputError(f"series {series_uid} not found; present: {_series_summary(series)}", folder)
    paths = [p for p, _ in series[series_uid]]
    headers = [ds for _, ds in series[series_uid]]

    first, p0 = headers[0], paths[0]
    iop = _vec(first, "ImageOrientationPatient", 6, p0)
    spacing = _vec(first, "PixelSpacing", 2, p0)  # (between rows, between columns)
    size = (int(first.Rows), int(first.Columns))
    for ds, p in zip(headers[1:], paths[1:], strict=True):
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise InputError(f"slice size {ds.Rows}x{ds.Columns} differs from {size[0]}x{size[1]} in the "
                             "series", p)
        if np.max(np.abs(_vec(ds, "ImageOrientationPatient", 6, p) - iop)) > 1e-4:
            raise InputError("ImageOrientationPatient differs between slices of the series", p)
        if np.max(np.abs(_vec(ds, "PixelSpacing", 2, p) - spacing)) > 1e-4:
            raise InputError("PixelSpacing differs between slices of the series", p)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if abs(np.linalg.norm(normal) - 1) > 1e-3 or abs(float(row_dir @ col_dir)) > 1e-3:
        raise InputError(f"ImageOrientationPatient {iop.tolist()} is not two orthonormal directions", p0)
    positions = np.stack([_vec(ds, "ImagePositionPatient", 3, p)
                          for ds, p in zip(headers, paths, strict=True)])
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    paths = [paths[i] for i in order]
    headers = [headers[i] for i in order]
    positions, dist = positions[order], dist[order]

    if len(headers) > 1:
        steps = np.diff(dist)
        if np.min(steps) < 1e-3:
            k = int(np.argmin(steps))
            raise InputError(f"two slices share position {dist[k]:.3f} mm along the normal ({paths[k].name}, "
                             f"{paths[k + 1].name}): mixed acquisitions in one series?", folder)
        step = float(np.median(steps))
        tol = max(spacing_tol * step, 1e-3)
        bad = np.abs(steps - step) > tol
        if np.any(bad):
            k = int(np.argmax(np.abs(steps - step)))
            ratio = steps[k] / step
            if abs(ratio - round(ratio)) * step <= tol and round(ratio) >= 2:
                raise InputError(f"{int(np.sum(np.rint(steps[bad] / step) - 1))} missing slice(s): a gap of "
                                 f"{steps[k]:.3f} mm after {paths[k].name} where the step is {step:.3f} mm",
                                 folder)
            raise InputError(f"non-uniform slice spacing: steps from {np.min(steps):.3f} to "
                             f"{np.max(steps):.3f} mm", folder)
        step = float((dist[-1] - dist[0]) / (len(dist) - 1))
        # Each position must lie on the line through the first one along the normal (no gantry tilt / shear).
        offaxis = positions - positions[0] - np.outer(dist - dist[0], normal)
        if np.max(np.linalg.norm(offaxis, axis=1)) > max(tol, 1e-2):
            raise InputError("slices are not stacked along their normal (gantry tilt?); resample the series "
                             "to an orthogonal grid first", folder)
    else:
        step = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)

    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # i (column index) moves along the row direction
    lps[:3, 1] = col_dir * spacing[0]  # j (row index) moves along the column direction
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[0]
    affine = np.eye(4)
    affine[:3, :] = _LPS @ lps[:3, :]
    return DicomSeries(folder, series_uid, paths, headers, Geometry(affine, (size[1], size[0], len(headers))))


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a DICOM series folder into a float32 (i, j, k) array of rescaled values (HU for CT) + geometry."""
    import pydicom

    series = scan_series(folder, series_uid)
    nx, ny, nz = series.geometry.shape
    out = np.empty((nx, ny, nz), dtype=np.float32)
    for k, (path, header) in enumerate(zip(series.paths, series.headers, strict=True)):
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # truncated pixel data, missing decoder, corrupt codestream...
            raise InputError(f"cannot decode pixel data ({type(exc).__name__}: {exc})", path) from None
        if pixels.shape != (ny, nx):
            raise InputError(f"pixel data has shape {pixels.shape}, expected {(ny, nx)}", path)
        slope = float(header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
        out[:, :, k] = (pixels.astype(np.float32) * slope + intercept).T
    return out, series.geometry


def _ds_str(x: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    s = f"{x:.10g}"
    return s if len(s) <= 16 else f"{x:.6e}"


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
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    array = np.asarray(array)
    if array.ndim != 3 or tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError("output folder is not empty (use overwrite to replace it)", folder)
    lps = _LPS @ geometry.affine[:3, :]
    sp = geometry.spacing
    row_dir, col_dir = lps[:, 0] / sp[0], lps[:, 1] / sp[1]
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise ValueError("the i and j axes are not perpendicular; DICOM slices cannot represent this grid")
    normal = np.cross(row_dir, col_dir)
    if abs(abs(float(normal @ lps[:, 2])) / sp[2] - 1) > 1e-4:
        raise ValueError("the k axis is not perpendicular to the slices; DICOM cannot represent this grid")

    values = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("array holds NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if np.rint(lo) >= -32768 and np.rint(hi) <= 32767:
        slope, intercept = 1.0, 0.0
    else:
        slope = (hi - lo) / 65535.0
        intercept = lo + 32768 * slope
    stored = np.clip(np.rint((values - intercept) / slope), -32768, 32767).astype("<i2")

    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    nx, ny, nz = array.shape

    tmp = make_staging(folder)
    try:
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
        swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths


def series_instance_uids(series: DicomSeries) -> Sequence[str]:
    """SOP Instance UIDs of the series' slices in k order (what DICOM-SEG frames refer to)."""
    return [str(h.get("SOPInstanceUID", "")) for h in series.headers]
