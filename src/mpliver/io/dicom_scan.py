"""DICOM headers as archives deliver them: recognise files, read one record per image plane, group by series.

A file is DICOM when it carries the Part 10 preamble ("DICM" at byte 128), whatever its name; names such as
DICOMDIR, README or *.json are never slices. A multi-frame (enhanced) CT image gives one record per frame from
its functional groups. Anonymisers often empty SOPInstanceUID, SOPClassUID, StudyInstanceUID or
SeriesInstanceUID in the data set: the SOP UIDs then come from the file meta, and the study/series UIDs are
generated deterministically from what the files still hold (so a SEG written today refers to the same UIDs
that a later read generates).
"""

from __future__ import annotations

import datetime
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from mpliver.errors import InputError

_SKIP_SUFFIXES = {".txt", ".json", ".md", ".xml", ".csv", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".zip",
                  ".log", ".html", ".pdf", ".yaml", ".yml", ".py", ".sh", ".bmp", ".tif", ".tiff"}
_SKIP_NAMES = {"dicomdir", "thumbs.db", ".ds_store", "version", "license", "readme"}
_UID_ROOT = "1.2.826.0.1.3680043.10.1234."  # only a prefix for generate_uid's hash; not a registered root


def is_dicom_file(path: str | Path) -> bool:
    """True when `path` is a file with the DICOM Part 10 preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


@dataclass
class SliceHeader:
    """One image plane: a single-frame file or one frame of a multi-frame file, with what stacking needs."""

    path: Path
    frame: int | None  # frame index in a multi-frame file, None for a single-frame file
    ds: object  # the file's pydicom Dataset without pixel data (shared by the frames of one file)
    iop: np.ndarray | None
    ipp: np.ndarray | None
    spacing: np.ndarray | None  # (between rows, between columns)
    rows: int
    cols: int
    slope: float | None
    intercept: float | None
    acquisition: int | None
    time_s: float | None  # acquisition (or content) time, seconds after midnight
    instance: int
    image_type: tuple[str, ...] = field(default_factory=tuple)
    modality: str = ""
    sop_class: str = ""

    @property
    def localizer(self) -> bool:
        return "LOCALIZER" in self.image_type


def candidate_files(root: Path) -> list[Path]:
    """Files under `root` (recursively; `root` itself if a file) that may be DICOM: hidden files and known
    non-DICOM names skipped."""
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.name.lower() in _SKIP_NAMES or p.suffix.lower() in _SKIP_SUFFIXES:
            continue
        out.append(p)
    return out


def read_header(path: Path):
    """The data set of `path` without pixel data; one-line InputError naming the file when it is damaged."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not is_dicom_file(path))
        _ = ds.get("SOPClassUID"), ds.get("Rows")  # force parsing of the elements we need
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"unreadable or truncated DICOM file ({type(exc).__name__}: {exc})", path) from None
    return ds


def _floats(value, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) else None


def _seconds(tm) -> float | None:
    """DICOM TM (or the time part of a DT) -> seconds after midnight."""
    text = str(tm or "").strip()
    if len(text) >= 14 and text[:8].isdigit():  # a DT: YYYYMMDDHHMMSS...
        text = text[8:]
    text = text.split("+")[0].split("-")[0].replace(":", "")
    try:
        hh, mm = int(text[0:2]), int(text[2:4] or 0)
        ss = float(text[4:] or 0)
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _group_item(ds, frame_item, sequence: str):
    """The first item of functional group `sequence` for a frame: per-frame first, then shared."""
    for holder in (frame_item, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        items = None if holder is None else holder.get(sequence)
        if items:
            return items[0]
    return None


def plane_records(path: Path, ds) -> list[SliceHeader]:
    """One `SliceHeader` per image plane of the file (one for a classic slice, one per frame for enhanced)."""
    sop_class = str(ds.get("SOPClassUID") or ds.get("file_meta", {}).get("MediaStorageSOPClassUID") or "")
    common = dict(path=path, ds=ds, rows=int(ds.get("Rows") or 0), cols=int(ds.get("Columns") or 0),
                  acquisition=_int(ds.get("AcquisitionNumber")), instance=_int(ds.get("InstanceNumber")) or 0,
                  image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or [])),
                  modality=str(ds.get("Modality", "")).upper(), sop_class=sop_class)
    frames = _int(ds.get("NumberOfFrames")) or 1
    if frames <= 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        return [SliceHeader(
            frame=None, iop=_floats(ds.get("ImageOrientationPatient"), 6),
            ipp=_floats(ds.get("ImagePositionPatient"), 3), spacing=_floats(ds.get("PixelSpacing"), 2),
            slope=None if slope in (None, "") else float(slope),
            intercept=None if intercept in (None, "") else float(intercept),
            time_s=_seconds(ds.get("AcquisitionTime") or ds.get("ContentTime")), **common)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames:
        raise InputError(f"multi-frame image with {frames} frames but {len(per_frame)} per-frame functional "
                         "groups", path)
    out = []
    for f, item in enumerate(per_frame):
        orient = _group_item(ds, item, "PlaneOrientationSequence")
        pos = _group_item(ds, item, "PlanePositionSequence")
        measures = _group_item(ds, item, "PixelMeasuresSequence")
        rescale = _group_item(ds, item, "PixelValueTransformationSequence")
        content = _group_item(ds, item, "FrameContentSequence")
        slope = None if rescale is None else rescale.get("RescaleSlope")
        intercept = None if rescale is None else rescale.get("RescaleIntercept")
        when = None if content is None else content.get("FrameAcquisitionDateTime")
        out.append(SliceHeader(
            frame=f, iop=_floats(None if orient is None else orient.get("ImageOrientationPatient"), 6),
            ipp=_floats(None if pos is None else pos.get("ImagePositionPatient"), 3),
            spacing=_floats(None if measures is None else measures.get("PixelSpacing"), 2),
            slope=None if slope in (None, "") else float(slope),
            intercept=None if intercept in (None, "") else float(intercept),
            time_s=_seconds(when) if when else _seconds(ds.get("AcquisitionTime") or ds.get("ContentTime")),
            **common))
    return out


def _is_image(ds) -> bool:
    """Image storage (CT, MR, secondary capture...), not SEG, SR, RT structures or presentation states."""
    uid = ds.get("SOPClassUID") or ds.get("file_meta", {}).get("MediaStorageSOPClassUID")
    if not uid or str(uid) == "":
        return "Rows" in ds
    return "Image" in getattr(pydicom.uid.UID(str(uid)), "name", "")


@dataclass
class ScannedSeries:
    """The image planes of one series (in file order) and its identity for listings and selection."""

    uid: str
    uid_generated: bool
    slices: list[SliceHeader]

    @property
    def first(self):
        return self.slices[0].ds

    @property
    def number(self) -> int | None:
        return _int(self.first.get("SeriesNumber"))

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", "") or "").strip()

    @property
    def files(self) -> list[Path]:
        return list(dict.fromkeys(s.path for s in self.slices))


def scan_folder(root: Path) -> tuple[dict[str, ScannedSeries], int]:
    """Image series under `root` (recursive): uid -> ScannedSeries, and the number of non-DICOM files skipped.

    Non-image objects (DICOM-SEG, SR, ...) are left out; damaged DICOM files raise a one-line InputError.
    """
    groups: dict[str, list[SliceHeader]] = {}
    skipped = 0
    for path in candidate_files(root):
        if not is_dicom_file(path) and path.suffix.lower() != ".dcm":
            # Files without the preamble are taken only when pydicom finds an image in them (old ACR-NEMA).
            try:
                with warnings.catch_warnings():  # pydicom warns about what it guesses in a non-DICOM file
                    warnings.simplefilter("ignore")
                    ds = read_header(path)
            except InputError:
                skipped += 1
                continue
            if "Rows" not in ds or "ImagePositionPatient" not in ds:
                skipped += 1
                continue
        else:
            ds = read_header(path)
        if not _is_image(ds):
            continue
        if "Rows" not in ds:
            raise InputError("unreadable or truncated DICOM file (image attributes missing)", path)
        # Without a SeriesInstanceUID (anonymised), number and description still keep series apart.
        key = str(ds.get("SeriesInstanceUID") or "") or f"\0{ds.get('SeriesNumber', '')}\0" \
            f"{ds.get('SeriesDescription', '')}"
        groups.setdefault(key, []).extend(plane_records(path, ds))
    series = {}
    for key, slices in groups.items():
        uid = "" if key.startswith("\0") else key
        generated = _fill_uids(slices, uid)
        series[generated or uid] = ScannedSeries(generated or uid, bool(generated), slices)
    return series, skipped


def _fill_uids(slices: list[SliceHeader], series_uid: str) -> str | None:
    """Fill empty SOP / study / series UIDs in the headers in place (file meta first, else generated).

    Returns the generated SeriesInstanceUID when the data set had none, else None.
    """
    generated = None
    datasets = list({id(s.ds): s.ds for s in slices}.values())
    for ds in datasets:
        meta = ds.get("file_meta", {})
        if not str(ds.get("SOPInstanceUID") or ""):
            ds.SOPInstanceUID = str(meta.get("MediaStorageSOPInstanceUID") or "")
        if not str(ds.get("SOPClassUID") or ""):
            ds.SOPClassUID = str(meta.get("MediaStorageSOPClassUID") or "")
    first = datasets[0]
    seeds = [str(first.get(k) or "") for k in ("FrameOfReferenceUID", "StudyDate", "StudyTime", "PatientID",
                                                "StudyID", "AccessionNumber")]
    study_uid = generate_uid(prefix=_UID_ROOT, entropy_srcs=["study", *seeds])
    if not series_uid:
        sops = sorted(str(ds.get("SOPInstanceUID") or "") for ds in datasets)
        number, desc = str(first.get("SeriesNumber") or ""), str(first.get("SeriesDescription") or "")
        generated = generate_uid(prefix=_UID_ROOT, entropy_srcs=["series", number, desc, *sops])
    for ds in datasets:
        if not str(ds.get("StudyInstanceUID") or ""):
            ds.StudyInstanceUID = study_uid
        if generated:
            ds.SeriesInstanceUID = generated
        if not str(ds.get("FrameOfReferenceUID") or ""):
            ds.FrameOfReferenceUID = generate_uid(prefix=_UID_ROOT, entropy_srcs=["frame", study_uid])
    return generated


def clock(seconds: float | None) -> str:
    """Seconds after midnight as HH:MM:SS (empty when unknown)."""
    if seconds is None:
        return ""
    return (datetime.datetime.min + datetime.timedelta(seconds=float(seconds))).strftime("%H:%M:%S")
