"""The input study of a prediction: its phases read and checked (`read_study`, the `io` stage), a given
liver mask placed on the PV grid, and the data classes the stages hand on (`StudyVolumes`, `StudyLiver`,
`PreparedStudy`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpliver.data.liver_check import LiverCheck
from mpliver.data.liver_mask import liver_mask_to_grid
from mpliver.data.registration import RigidTransform
from mpliver.data.slices import SliceMapping
from mpliver.errors import InputError
from mpliver.inference.clock import StageClock
from mpliver.io.checks import check_hu, check_slices, warn_lost_header
from mpliver.io.dicom import DicomSeries, read_dicom_series, scan_series
from mpliver.io.dicom_study import check_not_single_file, is_dicom_source
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import read_nifti

PhaseInput = str | Path | np.ndarray | tuple[np.ndarray, Geometry]


@dataclass
class StudyVolumes:
    """The phases of one study in the model's phase order: as read and checked (the `io` stage), or, with
    `transforms`, registered onto the grid of the primary phase (the `registration` stage)."""

    case_id: str
    volumes: dict[str, np.ndarray]
    geometries: dict[str, Geometry]
    sources: dict[str, Path | None]
    pv_dicom: DicomSeries | None = None
    timings: dict[str, float] = field(default_factory=dict)
    transforms: dict[str, RigidTransform] = field(default_factory=dict)


@dataclass
class StudyLiver:
    """The liver mask of a study on its PV grid (the `liver` stage), where it came from and its check."""

    mask: np.ndarray
    origin: str
    check: LiverCheck


@dataclass
class PreparedStudy:
    """A study ready for the network (`stacks`, (S, P, C, n, n) float32) with what the postprocess needs:
    the slice mapping back onto the PV grid, the liver mask and its check, and the registration."""

    case_id: str
    stacks: np.ndarray | None
    mapping: SliceMapping
    liver: np.ndarray
    geometry: Geometry
    axial_axis: int | None
    transforms: dict[str, RigidTransform]
    liver_check: LiverCheck
    liver_origin: str
    pv_dicom: DicomSeries | None = None
    timings: dict[str, float] = field(default_factory=dict)


def read_volume(source: PhaseInput, what: str) -> tuple[np.ndarray, Geometry, DicomSeries | None]:
    """(float32 array, geometry, scanned DICOM series or None) of a NIfTI file, a DICOM source or an array.

    A bare array gets a 1 mm RAS-aligned grid; pass `(array, Geometry)` to keep a real one.
    """
    if isinstance(source, tuple):
        array, geom = source
        array = np.asarray(array, dtype=np.float32)
        if tuple(array.shape) != tuple(geom.shape):
            raise InputError(f"{what}: array shape {array.shape} does not match its geometry {geom.shape}")
        return array, geom, None
    if isinstance(source, np.ndarray):
        if source.ndim != 3:
            raise InputError(f"{what}: expected a 3-D array, got shape {source.shape}")
        geom = Geometry.from_spacing(source.shape, (1.0, 1.0, 1.0))
        return source.astype(np.float32, copy=False), geom, None
    path = Path(source)
    if is_dicom_source(path):  # a folder, a study .zip, or PATH::series=...,group=...
        series = scan_series(path)  # once: the pixels, the lesions' slice references and a SEG use it
        array, geom = read_dicom_series(series)
        return array, geom, series
    if not path.exists():
        raise InputError(f"{what} not found", path)
    check_not_single_file(path, what)
    array, geom = read_nifti(path, dtype=np.float32)
    warn_lost_header(geom, path)
    return array, geom, None


def liver_mask_on_grid(source: PhaseInput, pv_geom: Geometry, values: tuple[int, ...] | None = None,
                       what: str = "liver mask") -> np.ndarray:
    """A user-supplied liver mask (any grid; `values` select the liver labels, None = non-zero) on the PV
    grid: placed exactly when its voxels are PV voxels (e.g. another axis order), else resampled (nearest)."""
    array, geom, _ = read_volume(source, what)
    mask = np.isin(np.rint(array), values) if values else array != 0
    return liver_mask_to_grid(mask, geom, pv_geom, source if isinstance(source, str | Path) else what)


def check_phase_names(given: Sequence[str], expected: Sequence[str], case_id: str) -> None:
    """An InputError naming the first phase the model takes that is missing, or the first given phase it
    does not take."""
    missing = [p for p in expected if p not in given]
    if missing:
        raise InputError(f"case {case_id}: missing phase {missing[0]} (the model takes "
                         f"{', '.join(expected)})")
    extra = [p for p in given if p not in expected]
    if extra:
        raise InputError(f"case {case_id}: phase {extra[0]} is not one of the model's phases "
                         f"({', '.join(expected)}); the bundle was trained on {len(expected)} phase(s)")


def read_study(expected: Sequence[str], phases: Mapping[str, PhaseInput], case_id: str,
               clock: StageClock | None = None) -> StudyVolumes:
    """The `io` stage: check the phase names against the model's (`expected`, primary first), read every
    phase and check its HU values and slices."""
    clock = clock or StageClock()
    clock.mark("io")
    check_phase_names(list(phases), list(expected), case_id)
    study = StudyVolumes(case_id, {}, {}, {})
    for name in expected:
        src = phases[name]
        array, geom, dicom = read_volume(src, f"{name} phase")
        origin = src if isinstance(src, str | Path) else None
        try:
            check_hu(array, origin)
            check_slices(geom, origin, "the volume")
        except InputError as exc:
            raise InputError(f"{name} phase: {exc}") from None
        study.volumes[name], study.geometries[name] = array, geom
        study.sources[name] = Path(src) if isinstance(src, str | Path) else None
        if name == expected[0]:  # the primary phase (PV by default)
            study.pv_dicom = dicom
    clock.stop()
    study.timings = dict(clock.timings)
    return study
