"""From the image planes of one series to one regular stack: stray planes dropped, acquisitions split.

Real archives put a localizer, a coronal reformat or a dose-report screen into the series of the axial
images. We keep the largest set of CT planes whose orientation, pixel spacing and size agree and name what was
left out. Series such as TCIA's "LIVER 3 PHASE" hold several acquisitions at the same positions: they are
split by AcquisitionNumber, else by acquisition time (gaps of more than `TIME_GAP_S`), else by the order in
which positions repeat. Only repeated positions trigger a split, so a helical scan whose every slice has its
own time (or acquisition number) stays one volume.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom

from mpliver.errors import InputError
from mpliver.io.dicom_scan import SliceHeader, clock
from mpliver.io.geometry import Geometry, lps_to_ras

CT_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
TIME_GAP_S = 5.0  # phases are >= ~20 s apart; slices of one helical acquisition < 1 s
_TOL = 1e-4


class AmbiguousSeriesError(InputError):
    """Several volumes in one input; the message is one line, `details` holds the table of the choices."""

    def __init__(self, message: str, path, details: str):
        super().__init__(message, path)
        self.details = details


def plane_name(iop: np.ndarray) -> str:
    """axial / coronal / sagittal (the axis closest to the plane normal), or oblique beyond ~10 degrees."""
    normal = np.cross(iop[:3], iop[3:])
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.985:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _reason(s: SliceHeader, ref: SliceHeader) -> str:
    """Why plane `s` is not part of the stack whose first plane is `ref`."""
    if s.localizer:
        return "localizer"
    if s.modality != "CT":
        return f"modality {s.modality or 'missing'}"
    if s.sop_class and s.sop_class not in CT_IMAGE_CLASSES:
        return f"not a CT image ({pydicom.uid.UID(s.sop_class).name})"
    if s.iop is None or s.ipp is None or s.spacing is None:
        return "no plane geometry"
    if np.max(np.abs(s.iop - ref.iop)) > _TOL:
        return f"other orientation ({plane_name(s.iop)})"
    if (s.rows, s.cols) != (ref.rows, ref.cols):
        return f"other size ({s.rows}x{s.cols})"
    return f"other pixel spacing ({s.spacing[0]:.4g} x {s.spacing[1]:.4g} mm)"


def _stackable(s: SliceHeader) -> bool:
    return (not s.localizer and s.modality == "CT" and (not s.sop_class or s.sop_class in CT_IMAGE_CLASSES)
            and s.iop is not None and s.ipp is not None and s.spacing is not None)


def _same_plane(a: SliceHeader, b: SliceHeader) -> bool:
    return ((a.rows, a.cols) == (b.rows, b.cols) and np.max(np.abs(a.iop - b.iop)) <= _TOL
            and np.max(np.abs(a.spacing - b.spacing)) <= _TOL)


def choose_stack(slices: Sequence[SliceHeader], where) -> tuple[list[SliceHeader], str | None]:
    """The largest set of CT planes with one orientation, pixel spacing and size, and a one-line notice of
    what was dropped (None when nothing was). Refuses a series with no CT planes (other modality)."""
    modalities = {s.modality for s in slices}
    if "CT" not in modalities:
        raise InputError(f"modality {', '.join(sorted(m or 'missing' for m in modalities))}: only CT is "
                         "accepted", where)
    clusters: list[list[SliceHeader]] = []
    for s in slices:
        if not _stackable(s):
            continue
        for cluster in clusters:
            if _same_plane(cluster[0], s):
                cluster.append(s)
                break
        else:
            clusters.append([s])
    if not clusters:
        s = slices[0]
        raise InputError(f"no CT image planes with a geometry in the series ({_reason(s, s)})", where)
    clusters.sort(key=len, reverse=True)
    if len(clusters) > 1 and len(clusters[0]) == len(clusters[1]):
        a, b = clusters[0][0], clusters[1][0]
        raise InputError(f"two stacks of {len(clusters[0])} planes in one series ({plane_name(a.iop)} "
                         f"{a.rows}x{a.cols} and {plane_name(b.iop)} {b.rows}x{b.cols}); cannot tell which "
                         "is the series: give a folder that holds only one", where)
    kept = clusters[0]
    ids = {id(s) for s in kept}
    dropped = [s for s in slices if id(s) not in ids]
    if not dropped:
        return kept, None
    reasons = Counter(_reason(s, kept[0]) for s in dropped)
    unit = "frames" if kept[0].frame is not None else "files"
    if len(reasons) == 1:
        why = next(iter(reasons))
    else:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
    notice = (f"dropped {len(dropped)} of {len(slices)} {unit}: {why}; kept {len(kept)} "
              f"{plane_name(kept[0].iop)} slices")
    return kept, notice


@dataclass
class AcquisitionGroup:
    """One volume inside a series: its planes and how it was told apart (e.g. 'acquisition 2')."""

    label: str
    slices: list[SliceHeader]

    def summary(self, normal: np.ndarray) -> dict[str, str]:
        d = np.array([s.ipp @ normal for s in self.slices])
        z = np.array([s.ipp[2] for s in self.slices])
        times = [s.time_s for s in self.slices if s.time_s is not None]
        ds = self.slices[0].ds
        numbers = sorted({s.acquisition for s in self.slices if s.acquisition is not None})
        acq = ",".join(map(str, numbers[:3])) + (",..." if len(numbers) > 3 else "")
        return {"group": self.label, "acq": acq, "slices": str(len(self.slices)),
                "step_mm": f"{np.median(np.diff(np.sort(d))):.3g}" if len(d) > 1 else "",
                "z_mm": f"{z.min():.1f} .. {z.max():.1f}",
                "time": f"{clock(min(times))}-{clock(max(times))}" if times else "",
                "contrast": str(ds.get("ContrastBolusAgent", "") or "").strip()}


def _distinct_positions(slices: Sequence[SliceHeader], normal: np.ndarray) -> bool:
    d = np.sort([s.ipp @ normal for s in slices])
    return len(d) < 2 or float(np.min(np.diff(d))) >= 1e-3


def _partition(slices, key: Callable[[SliceHeader], object]) -> list[list[SliceHeader]]:
    parts: dict[object, list[SliceHeader]] = {}
    for s in slices:
        parts.setdefault(key(s), []).append(s)
    return [parts[k] for k in sorted(parts, key=lambda k: (k is None, k))]


def _volumes(parts: list[list[SliceHeader]], normal: np.ndarray) -> bool:
    """A split is taken when it gives several groups of >= 3 slices, each without a repeated position."""
    return len(parts) > 1 and all(len(p) >= 3 and _distinct_positions(p, normal) for p in parts)


def split_acquisitions(slices: list[SliceHeader], normal: np.ndarray) -> list[AcquisitionGroup]:
    """Volumes of a stack whose positions repeat: by AcquisitionNumber, then time, then repeat order.

    A repeat that none of these explains as volumes of >= 3 slices (e.g. one file copied twice) stays in a
    single group, which `stack_geometry` refuses naming both files.
    """
    if _distinct_positions(slices, normal):
        return [AcquisitionGroup("1", slices)]
    by_number = _partition(slices, lambda s: s.acquisition)
    if _volumes(by_number, normal):
        return [AcquisitionGroup(str(i + 1), p) for i, p in enumerate(by_number)]
    timed = sorted((s.time_s, n) for n, s in enumerate(slices) if s.time_s is not None)
    if len(timed) == len(slices):
        cluster, prev, of = 0, None, {}
        for t, n in timed:
            if prev is not None and t - prev > TIME_GAP_S:
                cluster += 1
            of[n], prev = cluster, t
        by_time = _partition(range(len(slices)), lambda n: of[n])
        by_time = [[slices[n] for n in p] for p in by_time]
        if _volumes(by_time, normal):
            return [AcquisitionGroup(str(i + 1), p) for i, p in enumerate(by_time)]
    # The same position the n-th time (in instance-number order) belongs to the n-th volume.
    seen: Counter = Counter()
    rank = {}
    for s in sorted(slices, key=lambda s: (s.instance, s.time_s or 0.0, str(s.path), s.frame or 0)):
        pos = round(float(s.ipp @ normal), 2)
        rank[id(s)] = seen[pos]
        seen[pos] += 1
    by_repeat = _partition(slices, lambda s: rank[id(s)])
    if _volumes(by_repeat, normal):
        return [AcquisitionGroup(str(i + 1), p) for i, p in enumerate(by_repeat)]
    return [AcquisitionGroup("1", slices)]


def format_table(rows: Sequence[dict[str, str]]) -> str:
    """Rows of equal keys as a plain fixed-width text table (for terminals and error details)."""
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _name(s: SliceHeader) -> str:
    return s.path.name if s.frame is None else f"{s.path.name} frame {s.frame + 1}"


def stack_geometry(slices: list[SliceHeader], where, spacing_tol: float = 0.01
                   ) -> tuple[list[SliceHeader], Geometry]:
    """Sort one stack along its normal and build its geometry (DICOM LPS -> RAS).

    Refuses, naming `where`: duplicate positions, missing slices, non-uniform steps (relative tolerance
    `spacing_tol`) and slices not stacked along their normal (gantry tilt).
    """
    first = slices[0]
    iop, spacing = first.iop, first.spacing
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if abs(np.linalg.norm(normal) - 1) > 1e-3 or abs(float(row_dir @ col_dir)) > 1e-3:
        raise InputError(f"ImageOrientationPatient {iop.tolist()} is not two orthonormal directions",
                         first.path)
    dist = np.array([s.ipp @ normal for s in slices])
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    positions = np.stack([s.ipp for s in slices])
    if len(slices) > 1:
        steps = np.diff(dist)
        if np.min(steps) < 1e-3:
            k = int(np.argmin(steps))
            raise InputError(f"two slices share position {dist[k]:.3f} mm along the normal "
                             f"({_name(slices[k])}, {_name(slices[k + 1])}): mixed acquisitions in one "
                             "series?", where)
        step = float(np.median(steps))
        tol = max(spacing_tol * step, 1e-3)
        bad = np.abs(steps - step) > tol
        if np.any(bad):
            k = int(np.argmax(np.abs(steps - step)))
            ratio = steps[k] / step
            if abs(ratio - round(ratio)) * step <= tol and round(ratio) >= 2:
                raise InputError(f"{int(np.sum(np.rint(steps[bad] / step) - 1))} missing slice(s): a gap of "
                                 f"{steps[k]:.3f} mm after {_name(slices[k])} where the step is "
                                 f"{step:.3f} mm", where)
            raise InputError(f"non-uniform slice spacing: steps from {np.min(steps):.3f} to "
                             f"{np.max(steps):.3f} mm", where)
        step = float((dist[-1] - dist[0]) / (len(dist) - 1))
        # Each position must lie on the line through the first one along the normal (no gantry tilt / shear).
        offaxis = positions - positions[0] - np.outer(dist - dist[0], normal)
        if np.max(np.linalg.norm(offaxis, axis=1)) > max(tol, 1e-2):
            raise InputError("slices are not stacked along their normal (gantry tilt?); resample the series "
                             "to an orthogonal grid first", where)
    else:
        step = float(first.ds.get("SpacingBetweenSlices") or first.ds.get("SliceThickness") or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # i (column index) moves along the row direction
    lps[:3, 1] = col_dir * spacing[0]  # j (row index) moves along the column direction
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[0]
    return slices, Geometry(lps_to_ras(lps), (first.cols, first.rows, len(slices)))
