"""Builders of DICOM series as archives deliver them, made from a clean series on disk (real or phantom).

Each builder copies the clean files and edits headers with pydicom, the way a PACS export, a TCIA collection
or an anonymiser would; the clean series stays the reference the quirky one must read back equal to.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file())


def copy_series(src: Path, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in dicom_files(src):
        shutil.copy(p, dst / p.name)
        out.append(dst / p.name)
    return out


def _new_instance(ds) -> None:
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def add_coronal_slice(src: Path, dst: Path, name: str = "zz_coronal") -> Path:
    """The series plus one coronal reformat image sharing its series UID (same pixel matrix, new plane)."""
    files = copy_series(src, dst)
    ds = pydicom.dcmread(files[len(files) // 2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1] + 150.0, ipp[2] + 100.0]
    ds.ImageType = ["DERIVED", "SECONDARY", "MPR"]
    ds.InstanceNumber = 999
    _new_instance(ds)
    ds.save_as(dst / name)
    return dst / name


def add_localizer(src: Path, dst: Path, rows: int = 16, cols: int = 20) -> Path:
    """The series plus a small localizer image (other size, ImageType LOCALIZER, uncompressed)."""
    files = copy_series(src, dst)
    ds = pydicom.dcmread(files[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.PixelData = np.zeros((rows, cols), "<i2").tobytes()
    ds.InstanceNumber = 0
    _new_instance(ds)
    ds.save_as(dst / "localizer", enforce_file_format=True)
    return dst / "localizer"


def merge_acquisitions(sources: list[Path], dst: Path, *, acquisition_numbers: bool = True,
                       times: bool = True, series_uid: str | None = None) -> list[list[Path]]:
    """One series holding every source series as an acquisition (TCIA 'LIVER 3 PHASE' style).

    `acquisition_numbers` numbers them 1, 2, 3 (else all 1); `times` gives each its own acquisition/content
    time 40 s apart (else all equal, so only the repeated positions tell them apart). Returns the files of
    each acquisition.
    """
    dst.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    out = []
    instance = 1
    for a, src in enumerate(sources):
        files = []
        for k, p in enumerate(dicom_files(src)):
            ds = pydicom.dcmread(p)
            ds.SeriesInstanceUID = series_uid
            ds.AcquisitionNumber = a + 1 if acquisition_numbers else 1
            ds.AcquisitionTime = ds.ContentTime = _tm(12 * 3600 + (40 * a if times else 0) + k * 0.1)
            ds.InstanceNumber = instance
            instance += 1
            path = dst / f"IM{a}_{k:04d}"
            ds.save_as(path)
            files.append(path)
        out.append(files)
    return out


def _tm(seconds: float) -> str:
    """Seconds after midnight as a DICOM TM (HHMMSS.FFFFFF)."""
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{int(h):02d}{int(m):02d}{sec:09.6f}"


def anonymise_uids(src: Path, dst: Path) -> list[Path]:
    """Empty SOPInstanceUID, SOPClassUID, StudyInstanceUID and SeriesInstanceUID in the data set; the file
    meta keeps the SOP UIDs (what the anonymiser of the real PV series did)."""
    files = copy_series(src, dst)
    for p in files:
        ds = pydicom.dcmread(p)
        for key in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
            setattr(ds, key, "")
        ds.save_as(p)
    return files


def edit_all(src: Path, dst: Path, **attrs) -> list[Path]:
    """Copy with header attributes set (value None deletes the attribute)."""
    files = copy_series(src, dst)
    for p in files:
        ds = pydicom.dcmread(p)
        for key, value in attrs.items():
            if value is None:
                if key in ds:
                    delattr(ds, key)
            else:
                setattr(ds, key, value)
        ds.save_as(p)
    return files


def enhanced_ct(src: Path, dst_file: Path) -> Path:
    """The series as one Legacy Converted Enhanced CT multi-frame object (highdicom's converter)."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    sources = [pydicom.dcmread(p) for p in dicom_files(src)]
    study, series = generate_uid(), generate_uid()
    for ds in sources:  # the converter needs the UIDs an anonymiser may have emptied
        ds.SOPClassUID = ds.SOPClassUID or ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.SOPInstanceUID or ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = ds.StudyInstanceUID or study
        ds.SeriesInstanceUID = ds.SeriesInstanceUID or series
        ds.SeriesNumber = ds.get("SeriesNumber") or 1
    image = LegacyConvertedEnhancedCTImage(sources, series_instance_uid=generate_uid(), series_number=7,
                                           sop_instance_uid=generate_uid(), instance_number=1)
    dst_file.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(dst_file)
    return dst_file


def zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return zip_path
