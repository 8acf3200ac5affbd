"""DICOM-SEG (highdicom): read a segmentation onto the grid of its source series; write one from a label map.

Reading places each frame by its plane position (ImagePositionPatient along the slice normal) on the slice
of the series at that position; the frames' source references are checked, never trusted (some exports name
one source slice in every frame). A SEG on another in-plane grid is placed through world coordinates, which
must coincide voxel for voxel. A SEG of another frame of reference, series or patient is refused unless the
caller allows it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpliver.errors import InputError, InputWarning
from mpliver.io.atomic import atomic_path
from mpliver.io.dicom import DicomSeries, as_series, check_dicom_seg_source, series_instance_uids
from mpliver.io.geometry import Geometry
from mpliver.io.labels import LIVER, TUMOR
from mpliver.io.resample import reorient_to_grid

# Segment names understood as our label values (lower case; matched against SegmentLabel and the coded type).
LABEL_SYNONYMS: dict[str, int] = {
    "liver": LIVER, "liver parenchyma": LIVER,
    **dict.fromkeys(("tumor", "tumour", "tumors", "tumours", "lesion", "lesions", "liver tumor",
                     "liver tumour", "liver lesion", "neoplasm", "mass"), TUMOR),
}


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a DICOM-SEG: its number, label and coded property (category / type meanings)."""

    number: int
    label: str
    category: str
    property_type: str


def _segments(seg) -> list[SegmentInfo]:
    out = []
    for item in seg.SegmentSequence:
        out.append(SegmentInfo(
            number=int(item.SegmentNumber),
            label=str(item.get("SegmentLabel", "")),
            category=str(item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning),
            property_type=str(item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning),
        ))
    return out


def _segment_value(info: SegmentInfo, label_map: Mapping[str, int]) -> int | None:
    for name in (info.label, info.property_type):
        value = label_map.get(name.strip().lower())
        if value is not None:
            return value
    return None


def read_dicom_seg(
    seg_path: str | Path,
    series_folder: str | Path | DicomSeries,
    *,
    series_uid: str | None = None,
    label_map: Mapping[str, int] | None = None,
    allow_mismatch: bool = False,
) -> tuple[np.ndarray, Geometry, list[SegmentInfo]]:
    """Read a DICOM-SEG into a label array (i, j, k) on the grid of its source series in `series_folder` (or
    an already scanned `DicomSeries`).

    Without `label_map` a voxel holds its segment number; with one (e.g. `LABEL_SYNONYMS`), each segment's
    label or coded type (case-insensitive) gives the voxel value and an unknown segment is an error. Where
    segments overlap, the larger value wins (a tumour inside the liver stays tumour). A SEG whose frame of
    reference, referenced series or patient differs from the series is refused unless `allow_mismatch`.
    """
    import highdicom as hd  # lazy: highdicom is slow to import and only DICOM-SEG files need it

    seg_path = Path(seg_path)
    if not seg_path.is_file():
        raise InputError("DICOM-SEG file not found", seg_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(seg_path)
    except Exception as exc:
        raise InputError(f"not a readable DICOM-SEG ({type(exc).__name__}: {exc})", seg_path) from None
    series = as_series(series_folder, series_uid)
    if not allow_mismatch:
        check_seg_matches_series(seg, series, seg_path)
    segments = _segments(seg)
    numbers = [s.number for s in segments]
    if label_map is None:
        values = {s.number: s.number for s in segments}
    else:
        values = {}
        for s in segments:
            v = _segment_value(s, label_map)
            if v is None:
                raise InputError(f"segment {s.number} '{s.label}' ({s.property_type}) is none of "
                                 f"{sorted(set(label_map))}", seg_path)
            values[s.number] = v

    stack = _by_plane_position(seg, series, numbers, seg_path)
    if stack is None:
        stack = _by_geometry(seg, series.geometry, numbers, seg_path)
    dtype = np.uint8 if max(values.values(), default=0) < 256 else np.uint16
    label = np.zeros(series.geometry.shape, dtype=dtype)
    for n in sorted(numbers, key=lambda n: values[n]):  # larger values painted last
        label[stack[..., numbers.index(n)] > 0] = values[n]
    return label, series.geometry, segments


def _series_value(series: DicomSeries, key: str) -> str:
    """The first non-empty value of `key` among the series' headers ('' if none has one)."""
    return next((str(v) for h in series.headers if (v := h.get(key)) not in (None, "")), "")


def check_seg_matches_series(seg, series: DicomSeries, seg_path: str | Path) -> None:
    """Refuse a SEG made on another frame of reference, another series or another patient (one line naming
    both values of each mismatch). A value missing on either side (anonymised data) is not compared."""
    problems = []
    seg_for = str(seg.get("FrameOfReferenceUID", ""))
    series_for = _series_value(series, "FrameOfReferenceUID")
    if seg_for and series_for and seg_for != series_for:
        problems.append(f"FrameOfReferenceUID {seg_for} (SEG) vs {series_for} (series)")
    referenced = [str(s.get("SeriesInstanceUID", "")) for s in seg.get("ReferencedSeriesSequence", [])]
    referenced = [uid for uid in referenced if uid]
    series_uid = _series_value(series, "SeriesInstanceUID")
    if referenced and series_uid and series_uid not in referenced:
        problems.append(f"referenced series {', '.join(referenced)} (SEG) vs SeriesInstanceUID {series_uid} "
                        "(series)")
    for key in ("PatientID", "PatientName"):
        a, b = str(seg.get(key, "") or ""), _series_value(series, key)
        if a and b and a != b:
            problems.append(f"{key} '{a}' (SEG) vs '{b}' (series)")
            break  # the ID decides when both carry one; the name only when the IDs are missing
        if a and b:
            break
    if problems:
        raise InputError(f"DICOM-SEG does not belong to the series in {series.folder}: "
                         f"{'; '.join(problems)}; pass --label-mismatch-ok to use it anyway", seg_path)


def _frame_item(seg, f: int, sequence: str):
    """Item of a functional-group `sequence` for frame `f`: per-frame first, else the shared group."""
    shared = seg.get("SharedFunctionalGroupsSequence", [None])[0]
    for groups in (seg.PerFrameFunctionalGroupsSequence[f], shared):
        if groups is not None and sequence in groups and len(groups[sequence].value):
            return groups[sequence].value[0]
    return None


def _by_plane_position(seg, series: DicomSeries, numbers: list[int], seg_path: Path) -> np.ndarray | None:
    """Segment masks (i, j, k, segment) placed by each frame's ImagePositionPatient along the slice normal.

    None when the SEG's in-plane grid (orientation, pixel spacing, rows x columns) differs from the series
    (then `_by_geometry` resamples exactly, if it can). Frame source references are only checked: some
    exports name one and the same source slice in every frame, so they never decide the slice.
    """
    first = series.slices[0]  # parsed per plane, so enhanced (multi-frame) CT has them too
    n_frames = int(seg.get("NumberOfFrames", 1) or 1)
    if n_frames == 0 or "PerFrameFunctionalGroupsSequence" not in seg:
        return None
    orient = _frame_item(seg, 0, "PlaneOrientationSequence")
    measures = _frame_item(seg, 0, "PixelMeasuresSequence")
    if orient is None or measures is None:
        return None
    iop = np.asarray([float(v) for v in orient.ImageOrientationPatient])
    series_iop = first.iop
    spacing = np.asarray([float(v) for v in measures.PixelSpacing])
    series_spacing = first.spacing
    if (np.max(np.abs(iop - series_iop)) > 1e-4 or np.max(np.abs(spacing - series_spacing)) > 1e-4
            or (int(seg.Rows), int(seg.Columns)) != (first.rows, first.cols)):
        return None
    normal = np.cross(series_iop[:3], series_iop[3:])
    slice_pos = np.stack([s.ipp for s in series.slices])
    slice_dist = slice_pos @ normal  # ascending: scan_series sorts the slices along the normal
    step = float(np.median(np.diff(slice_dist))) if len(slice_dist) > 1 else 1.0
    tol = max(0.05 * abs(step), 1e-2)
    uid_to_k = {uid: k for k, uid in enumerate(series_instance_uids(series)) if uid}
    pixels = np.asarray(seg.pixel_array).reshape(n_frames, int(seg.Rows), int(seg.Columns))
    if str(seg.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        pixels = pixels > float(seg.get("MaximumFractionalValue", 255)) / 2
    out = np.zeros((*series.geometry.shape, len(numbers)), dtype=np.uint8)
    disagree: list[tuple[int, int, int]] = []
    for f in range(n_frames):
        plane = _frame_item(seg, f, "PlanePositionSequence")
        ident = _frame_item(seg, f, "SegmentIdentificationSequence")
        if plane is None or ident is None:
            return None
        pos = np.asarray([float(v) for v in plane.ImagePositionPatient])
        k = int(np.argmin(np.abs(slice_dist - pos @ normal)))
        if np.linalg.norm(pos - slice_pos[k]) > tol:
            raise InputError(f"DICOM-SEG frame {f + 1} at {pos @ normal:.2f} mm along the slice normal "
                             f"(position {np.round(pos, 2).tolist()}) lies on no slice of the series "
                             f"({slice_dist[0]:.2f}..{slice_dist[-1]:.2f} mm, step {step:.2f} mm)", seg_path)
        number = int(ident.ReferencedSegmentNumber)
        if number not in numbers:
            raise InputError(f"DICOM-SEG frame {f + 1} refers to segment {number}, which the SEG does not "
                             "describe", seg_path)
        out[:, :, k, numbers.index(number)] |= (pixels[f] > 0).T.astype(np.uint8)
        derivation = _frame_item(seg, f, "DerivationImageSequence")
        sources = derivation.get("SourceImageSequence", []) if derivation is not None else []
        ref_k = [uid_to_k.get(str(s.get("ReferencedSOPInstanceUID", ""))) for s in sources]
        ref_k = [r for r in ref_k if r is not None]
        if ref_k and k not in ref_k:
            disagree.append((f + 1, ref_k[0], k))
    if disagree:
        f, ref, k = disagree[0]
        warnings.warn(InputWarning(
            f"{seg_path}: {len(disagree)} of {n_frames} DICOM-SEG frames name a source slice other than the "
            f"one at their plane position (frame {f} names slice {ref + 1}, lies on slice {k + 1}); frames "
            "placed by plane position"), stacklevel=2)
    return out


def _by_geometry(seg, geometry: Geometry, numbers: list[int], seg_path: Path) -> np.ndarray:
    """Segment masks placed on the series grid through the SEG's own plane positions (exact voxel match)."""
    try:
        vol = seg.get_volume(segment_numbers=numbers, combine_segments=False)
    except Exception as exc:
        raise InputError(f"DICOM-SEG frames do not form a regular volume ({type(exc).__name__}: {exc})",
                         seg_path) from None
    array = np.asarray(vol.array)
    if array.ndim == 3:
        array = array[..., None]
    src = Geometry(vol.get_affine("RAS"), array.shape[:3])
    out = np.zeros((*geometry.shape, len(numbers)), dtype=np.uint8)
    for c in range(len(numbers)):
        placed = reorient_to_grid(array[..., c].astype(np.uint8), src, geometry)
        if placed is None:
            raise InputError("DICOM-SEG frames do not lie on the voxel grid of the series (different "
                             "spacing, orientation or position)", seg_path)
        out[..., c] = placed
    return out


def write_dicom_seg(
    path: str | Path,
    label: np.ndarray,
    series_folder: str | Path | DicomSeries,
    *,
    segments: Mapping[int, str] | None = None,
    series_uid: str | None = None,
    algorithm: str | None = None,
    series_description: str = "mpliver segmentation",
    content_label: str = "MPLIVER",
) -> Path:
    """Write label map `label` (i, j, k, on the series grid; value = segment number) as a binary DICOM-SEG.

    `segments` names the values (default 1 liver, 2 tumour); `algorithm` (name) marks the segments as
    AUTOMATIC, otherwise MANUAL. The source series must carry real SOP/Series/Study UIDs.
    """
    import highdicom as hd  # lazy: highdicom is slow to import and only DICOM-SEG files need it
    from pydicom.sr.codedict import codes  # lazy: builds the whole code dictionary on first import

    segments = dict(segments or {LIVER: "liver", TUMOR: "tumor"})
    series = check_dicom_seg_source(as_series(series_folder, series_uid))  # single-frame, with SOP UIDs
    label = np.asarray(label)
    if tuple(label.shape) != tuple(series.geometry.shape):
        raise InputError(f"label shape {label.shape} does not match the series grid {series.geometry.shape}",
                         series.folder)
    present = {int(v) for v in np.unique(label)} - {0}
    unknown = present - set(segments)
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} have no segment description")

    if algorithm:
        algo_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algo_id = hd.AlgorithmIdentificationSequence(name=algorithm, version="1",
                                                     family=codes.DCM.ArtificialIntelligence)
    else:
        algo_type, algo_id = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    descriptions = []
    for number, name in sorted(segments.items()):
        value = LABEL_SYNONYMS.get(name.lower())
        category, ptype = {1: (codes.SCT.Organ, codes.SCT.Liver),
                           2: (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)}.get(
            value, (codes.SCT.AnatomicalStructure, codes.SCT.AnatomicalStructure))
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=category,
            segmented_property_type=ptype,
            algorithm_type=algo_type,
            algorithm_identification=algo_id,
        ))
    sources = series.headers  # read without pixels; anonymised SOP/study/series UIDs already filled in
    frames = np.ascontiguousarray(np.transpose(label, (2, 1, 0))).astype(np.uint8)  # (slice, row, col)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(sources[0].get("SeriesNumber") or 0) + 100,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="mpliver",
            manufacturer_model_name="mpliver",
            software_versions="mpliver",
            device_serial_number="0",
            content_label=content_label,
            content_description=series_description[:64],
            omit_empty_frames=bool(np.any(frames)),  # highdicom needs >= 1 frame
        )
        seg.SeriesDescription = series_description[:64]
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path

