"""DICOM-SEG (highdicom): read a segmentation onto the grid of its source series; write one from a label map.

Reading goes by the source instances the SEG frames refer to; when the series on disk is not the one the
SEG references by UID (a re-export with new UIDs), it falls back to the geometry: the SEG volume is placed
onto the series grid through world coordinates, which must coincide voxel for voxel.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpliver.errors import InputError
from mpliver.io.dicom import scan_series, series_instance_uids
from mpliver.io.geometry import Geometry
from mpliver.io.resample import reorient_to_grid

# Segment names understood as our label values (lower case; matched against SegmentLabel and the coded type).
LABEL_SYNONYMS: dict[str, int] = {
    "liver": 1, "liver parenchyma": 1,
    "tumor": 2, "tumour": 2, "tumors": 2, "tumours": 2, "lesion": 2, "lesions": 2, "liver tumor": 2,
    "liver tumour": 2, "liver lesion": 2, "neoplasm": 2, "mass": 2,
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
    series_folder: str | Path,
    *,
    series_uid: str | None = None,
    label_map: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, Geometry, list[SegmentInfo]]:
    """Read a DICOM-SEG into a label array (i, j, k) on the grid of its source series in `series_folder`.

    Without `label_map` a voxel holds its segment number; with one (e.g. `LABEL_SYNONYMS`), each segment's
    label or coded type (case-insensitive) gives the voxel value and an unknown segment is an error. Where
    segments overlap, the larger value wins (a tumour inside the liver stays tumour).
    """
    import highdicom as hd

    seg_path = Path(seg_path)
    if not seg_path.is_file():
        raise InputError("DICOM-SEG file not found", seg_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(seg_path)
    except Exception as exc:
        raise InputError(f"not a readable DICOM-SEG ({type(exc).__name__}: {exc})", seg_path) from None
    series = scan_series(series_folder, series_uid)
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

    stack = _by_source_instance(seg, series, numbers)
    if stack is None:
        stack = _by_geometry(seg, series.geometry, numbers, seg_path)
    dtype = np.uint8 if max(values.values(), default=0) < 256 else np.uint16
    label = np.zeros(series.geometry.shape, dtype=dtype)
    for n in sorted(numbers, key=lambda n: values[n]):  # larger values painted last
        label[stack[..., numbers.index(n)] > 0] = values[n]
    return label, series.geometry, segments


def _by_source_instance(seg, series, numbers: list[int]) -> np.ndarray | None:
    """Segment masks (i, j, k, segment) through the SEG's references to the series' SOP instances, or None."""
    uids = list(series_instance_uids(series))
    referenced = {str(r.ReferencedSOPInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])
                  for r in s.get("ReferencedInstanceSequence", [])}
    if not referenced or not (referenced & set(uids)) or "" in uids:
        return None
    try:
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=False,
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True, skip_overlap_checks=True,
        )
    except (ValueError, KeyError, RuntimeError, AttributeError, IndexError):
        return None
    return np.transpose(px, (2, 1, 0, 3))  # (slice, row, col, seg) -> (i=col, j=row, k=slice, seg)


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
    series_folder: str | Path,
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
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from mpliver.io.atomic import atomic_path

    segments = dict(segments or {1: "liver", 2: "tumor"})
    series = scan_series(series_folder, series_uid)
    label = np.asarray(label)
    if tuple(label.shape) != tuple(series.geometry.shape):
        raise InputError(f"label shape {label.shape} does not match the series grid {series.geometry.shape}",
                         series_folder)
    present = {int(v) for v in np.unique(label)} - {0}
    unknown = present - set(segments)
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} have no segment description")
    if "" in series_instance_uids(series):  # empty in the data set AND the file meta
        raise InputError("source slices have no SOPInstanceUID; a DICOM-SEG cannot refer to them",
                         series_folder)
    if series.multiframe:
        raise InputError("enhanced (multi-frame) CT is read, but a DICOM-SEG of it is not written",
                         series_folder)

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


def segment_names(segments: Sequence[SegmentInfo]) -> list[str]:
    """Human-readable names `number: label (type)` for messages and reports."""
    return [f"{s.number}: {s.label} ({s.property_type})" for s in segments]
