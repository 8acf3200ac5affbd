"""The lesion table of one predicted study: one row per 26-connected tumour component (`mpliver predict`).

Each row: volume (mL), longest axial diameter (mm), centroid (voxel indices and RAS mm), mean uncertainty,
the axial slice range and `incomplete`: the lesion touches a face of the image (the in-plane border or the
first or last slice), so part of it may lie outside the scan and its size is a lower bound. For a DICOM input
the rows also name the first and last DICOM image of the lesion (InstanceNumber, SOPInstanceUID), the images
holding its lowest and highest slice index k, so that a reader finds it in a viewer.

The longest axial diameter is the largest in-plane Feret diameter over the lesion's axial slices, measured
on the union of its voxel squares (a voxel is a square of its in-plane spacing, so a box of a x b voxels at
spacing sx x sy measures sqrt((a sx)^2 + (b sy)^2)), in mm through the affine. Rows are sorted by volume,
largest first. Reports carry the research-use notice and, for a model trained on the
synthetic cohort, a synthetic-training notice: in the JSON and in a text sidecar, never in the CSV, which
opens with any CSV reader's defaults (pandas.read_csv included).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from mpliver.data.orientation import slice_orientation
from mpliver.errors import RESEARCH_NOTICE
from mpliver.io.atomic import write_json_atomic, write_text_atomic
from mpliver.io.geometry import Geometry
from mpliver.io.labels import TUMOR

SYNTHETIC_NOTICE = ("The model was trained on mpliver's synthetic phantom cohort only: its output says "
                    "nothing reliable about real patients.")
COLUMNS = ("lesion", "volume_ml", "longest_axial_diameter_mm", "centroid_i", "centroid_j", "centroid_k",
           "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "mean_uncertainty", "first_slice", "last_slice",
           "voxels", "incomplete")
DICOM_COLUMNS = ("first_instance_number", "first_sop_instance_uid", "last_instance_number",
                 "last_sop_instance_uid")


def _feret_mm(points_ij: np.ndarray, plane_affine: np.ndarray) -> float:
    """Largest distance (mm) between the corners of the given voxels of one slice.

    `points_ij` (n, 2) in-plane voxel indices; `plane_affine` (3, 2) maps an in-plane index step to mm.
    """
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    corners = np.unique((points_ij[:, None, :] + offsets[None]).reshape(-1, 2), axis=0)
    if len(corners) > 8:
        try:  # the farthest pair lies on the convex hull; a linear map keeps hull vertices
            corners = corners[ConvexHull(corners).vertices]
        except QhullError:  # collinear points (one row of voxels): keep them all
            pass
    return float(pdist(corners @ plane_affine.T).max())


def _row_extremes(mask: np.ndarray) -> np.ndarray:
    """(n, 2) indices of the first and last pixel of every non-empty row of a 2-D mask. Every other pixel
    of a row lies between those two, so their squares have the same convex hull, and so the same Feret
    diameter, as the whole mask: a big lesion costs O(rows) hull points instead of O(pixels)."""
    rows = np.flatnonzero(mask.any(axis=1))
    sub = mask[rows]
    first = sub.argmax(axis=1)
    last = mask.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    return np.concatenate([np.stack([rows, first], 1), np.stack([rows, last], 1)])


def lesion_table(label: np.ndarray, uncertainty: np.ndarray | None, geometry: Geometry,
                 tumor_value: int = TUMOR, axial_axis: int | None = None,
                 dicom_slices: Sequence[tuple[int | None, str]] | None = None) -> list[dict[str, Any]]:
    """One dict per 26-connected component of `label == tumor_value` (COLUMNS), largest volume first.

    `uncertainty` (same shape, or None) gives `mean_uncertainty`; `axial_axis` None detects it from the
    affine. `dicom_slices` (InstanceNumber, SOPInstanceUID) of each DICOM image along array axis k adds
    DICOM_COLUMNS.
    """
    label = np.asarray(label)
    if tuple(label.shape) != tuple(geometry.shape):
        raise ValueError(f"label shape {label.shape} does not match the geometry {geometry.shape}")
    if uncertainty is not None and np.shape(uncertainty) != label.shape:
        raise ValueError(f"uncertainty shape {np.shape(uncertainty)} differs from the label {label.shape}")
    if dicom_slices is not None and len(dicom_slices) != label.shape[2]:
        raise ValueError(f"{len(dicom_slices)} DICOM images for {label.shape[2]} slices along k")
    components, n = ndimage.label(label == tumor_value, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    axial = slice_orientation(geometry, axial_axis).axial_axis
    plane = [a for a in range(3) if a != axial]
    plane_affine = geometry.affine[:3, plane]  # (3, 2): mm per in-plane index step
    voxel_ml = abs(float(np.linalg.det(geometry.affine[:3, :3]))) / 1000.0
    rows = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        local = components[box] == index
        offset = np.array([s.start for s in box])
        idx = np.argwhere(local)
        count = len(idx)
        centroid = idx.mean(axis=0) + offset
        world = geometry.index_to_world(centroid)
        diameter = 0.0
        slabs = np.moveaxis(local, axial, 0)  # (axial, plane[0], plane[1]) within the box
        for k in np.flatnonzero(slabs.any(axis=(1, 2))):
            points = _row_extremes(slabs[k]) + offset[plane]
            diameter = max(diameter, _feret_mm(points.astype(float), plane_affine))
        mean_u = float("nan")
        if uncertainty is not None:
            mean_u = float(np.mean(np.asarray(uncertainty)[box][local], dtype=np.float64))
        axial_idx = idx[:, axial] + offset[axial]
        touches = any(b.start == 0 or b.stop == n for b, n in zip(box, label.shape, strict=True))
        refs = {}
        if dicom_slices is not None:
            for end, k in (("first", box[2].start), ("last", box[2].stop - 1)):
                number, uid = dicom_slices[k]
                refs[f"{end}_instance_number"], refs[f"{end}_sop_instance_uid"] = number, uid
        rows.append({
            "volume_ml": count * voxel_ml,
            "longest_axial_diameter_mm": diameter,
            **{f"centroid_{a}": float(c) for a, c in zip("ijk", centroid, strict=True)},
            **{f"centroid_{a}_mm": float(c) for a, c in zip("xyz", world, strict=True)},
            "mean_uncertainty": mean_u,
            "first_slice": int(axial_idx.min()), "last_slice": int(axial_idx.max()),
            "voxels": count,
            "incomplete": bool(touches),
            **refs,
        })
    rows.sort(key=lambda r: -r["volume_ml"])
    for number, row in enumerate(rows, start=1):
        row["lesion"] = number
    columns = COLUMNS + (DICOM_COLUMNS if dicom_slices is not None else ())
    return [{c: r[c] for c in columns} for r in rows]


def notices(synthetic: bool) -> list[str]:
    """The notices every report carries."""
    return [f"{RESEARCH_NOTICE}."] + ([SYNTHETIC_NOTICE] if synthetic else [])  # sentences, joined by spaces


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def lesion_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text: the header and one line per lesion, nothing else (the notices go to the JSON and sidecar)."""
    buf = io.StringIO()
    columns = COLUMNS + (DICOM_COLUMNS if rows and DICOM_COLUMNS[0] in rows[0] else ())
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return buf.getvalue()


def notice_path(csv_path: str | Path) -> Path:
    """The sidecar of a lesion CSV that carries its notices: CASE_lesions.csv -> CASE_lesions_notice.txt."""
    path = Path(csv_path)
    return path.with_name(f"{path.name[:-4] if path.name.endswith('.csv') else path.name}_notice.txt")


def write_lesion_report(csv_path: str | Path, json_path: str | Path, rows: Sequence[dict[str, Any]],
                        case_id: str, synthetic: bool = False, meta: dict[str, Any] | None = None,
                        liver_volume_ml: float | None = None) -> tuple[Path, Path]:
    """Write the lesion table as CSV, its notice sidecar (`notice_path`) and JSON (notices, `meta`, e.g.
    the model, and with `liver_volume_ml` the tumour burden = tumour / liver volume in %), atomically."""
    write_text_atomic(csv_path, lesion_csv(rows))
    write_text_atomic(notice_path(csv_path), "\n".join([*notices(synthetic),
                                                        f"Lesion table: {Path(csv_path).name}"]) + "\n")
    tumor_ml = float(sum(r["volume_ml"] for r in rows))
    burden = {}
    if liver_volume_ml is not None:
        burden = {"liver_volume_ml": float(liver_volume_ml), "tumor_volume_ml": tumor_ml,
                  "tumor_burden_percent": 100.0 * tumor_ml / liver_volume_ml if liver_volume_ml > 0 else None}
    doc = {
        "case": case_id,
        "notice": " ".join(notices(synthetic)),
        "research_use_only": True,
        "synthetic_training": bool(synthetic),
        "num_lesions": len(rows),
        "total_volume_ml": tumor_ml,
        **burden,
        **(meta or {}),
        "lesions": [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                    for r in rows],
    }
    write_json_atomic(json_path, doc)
    return Path(csv_path), Path(json_path)
