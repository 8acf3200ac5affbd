"""Inter-phase registration: put every non-PV phase on the PV grid (docs/method.md §4.2).

Methods:
- 'tumor-center' (the paper's, after Xu et al.): translate the phase so that the centroid of its tumour label
  (`labelsTr_phases/`) meets the centroid of the PV tumour label. It needs labels, so it exists for training
  and evaluation parity with the paper only; it cannot run on new studies.
- 'liver': label-free rigid registration of the liver region with SimpleITK: Mattes mutual information on HU
  clipped to a soft-tissue window, the PV liver mask (dilated) as the fixed-image mask, three resolutions,
  a translation stage then a rigid (Euler) stage, initialised by the identity in world coordinates. The
  default at inference.
- 'none': resample through the header geometry only.

A transform is stored as an affine map in RAS mm from PV world points to points of the moving phase:
p_moving = A @ p_pv + b. With the phantom's convention (anatomy at p in PV appears at p + motion in ART) a
pure translation has A = I and b = motion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mpliver.data.config import REGISTRATIONS
from mpliver.errors import InputError
from mpliver.io.checks import axial_slice_count
from mpliver.io.geometry import Geometry, ras_to_lps, ras_to_lps_map, to_sitk
from mpliver.io.labels import LIVER, TUMOR
from mpliver.io.layout import CaseVolumes
from mpliver.io.resample import resample_to_grid

METHODS = REGISTRATIONS
FILL_HU = -1024.0


@dataclass
class RigidTransform:
    """p_moving = matrix @ p_pv + translation, in RAS mm."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    method: str = "none"
    metric: float | None = None  # the optimiser's final metric value ('liver': Mattes MI, lower is better)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) @ self.matrix.T + self.translation

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """Where each PV point is found in the moving phase, minus the point itself (mm)."""
        return self.apply(points) - np.asarray(points, dtype=np.float64)

    def rotation_degrees(self) -> float:
        """Angle of the rotation part in degrees, arccos((trace - 1) / 2): 0 for a pure translation."""
        cos = (float(np.trace(self.matrix)) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def to_dict(self) -> dict:
        return {"method": self.method, "matrix": np.asarray(self.matrix).tolist(),
                "translation": np.asarray(self.translation).tolist(), "metric": self.metric}

    @classmethod
    def from_dict(cls, d: dict) -> RigidTransform:
        metric = d.get("metric")
        return cls(np.asarray(d["matrix"], float), np.asarray(d["translation"], float),
                   d.get("method", "none"), None if metric is None else float(metric))


def world_bounds(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned RAS bounding box (mm) of the voxel centres of a grid."""
    pts = geometry.index_to_world(geometry.corners())
    return pts.min(axis=0), pts.max(axis=0)


def check_overlap(ref: Geometry, other: Geometry, path: str | Path | None = None,
                  what: str = "phase") -> None:
    """Refuse a phase whose field of view does not physically overlap the PV phase at all."""
    lo1, hi1 = world_bounds(ref)
    lo2, hi2 = world_bounds(other)
    half = np.maximum(ref.spacing.max(), other.spacing.max()) / 2
    if np.any(np.minimum(hi1, hi2) + half < np.maximum(lo1, lo2) - half):
        raise InputError(
            f"the {what} does not overlap the PV phase in world coordinates (its extent "
            f"{np.round(lo2, 1).tolist()}..{np.round(hi2, 1).tolist()} mm vs PV "
            f"{np.round(lo1, 1).tolist()}..{np.round(hi1, 1).tolist()} mm): wrong file or broken header",
            path)


def label_centroid(label: np.ndarray, geometry: Geometry, value: int = TUMOR) -> np.ndarray | None:
    """World (RAS mm) centroid of the voxels equal to `value`, or None if there are none."""
    idx = np.argwhere(label == value)
    if len(idx) == 0:
        return None
    return geometry.index_to_world(idx.mean(axis=0))


def tumor_center_transform(pv_label: np.ndarray, pv_geom: Geometry, moving_label: np.ndarray | None,
                           moving_geom: Geometry,
                           moving_label_path: str | Path | None = None) -> RigidTransform:
    """The paper's registration: the translation that matches the tumour centroids (needs both labels).

    Training/evaluation parity only: it reads the tumour label of the moving phase, which new studies lack.
    """
    if moving_label is None:
        raise InputError("tumor-center registration needs the tumour label of this phase "
                         "(labelsTr_phases/); use --registration liver for label-free registration",
                         moving_label_path)
    c_pv = label_centroid(pv_label, pv_geom)
    c_mov = label_centroid(moving_label, moving_geom)
    if c_pv is None or c_mov is None:
        raise InputError("tumor-center registration needs a tumour (label 2) in both the PV label and "
                         "the phase label", moving_label_path)
    return RigidTransform(np.eye(3), c_mov - c_pv, "tumor-center")


@dataclass(frozen=True)
class LiverRegistrationSettings:
    """Parameters of the label-free liver registration.

    Both images are cropped to the (dilated) liver region plus `max_motion_mm` and binned to about
    `working_spacing_mm` before the pyramid runs: that keeps the cost of a case independent of the input
    resolution, and the linear interpolation of the metric still resolves sub-voxel shifts.
    """

    hu_window: tuple[float, float] = (-150.0, 250.0)
    mask_dilation_mm: float = 15.0
    max_motion_mm: float = 30.0
    working_spacing_mm: float = 3.0
    bins: int = 32
    sampling: float = 0.25
    shrink: tuple[int, ...] = (2, 1)
    smoothing_mm: tuple[float, ...] = (4.0, 1.0)
    iterations: int = 60
    rigid: bool = True
    seed: int = 1
    # ITK's multi-threaded Mattes MI adds the threads' partial sums in the order they finish, so the result
    # changed in its last bits from run to run; one thread makes a registration reproducible bit for bit
    # (the pipelined batch gives the sequential batch's bytes only then). Its cost: benchmarks/RESULTS.md.
    threads: int = 1


def _register(fixed, moving, mask, initial, settings: LiverRegistrationSettings, levels: slice):
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(settings.threads)
    reg.SetNumberOfWorkUnits(settings.threads)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.02,
                                                 numberOfIterations=settings.iterations,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(settings.shrink[levels]))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_mm[levels]))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    transform = reg.Execute(fixed, moving)
    return transform, float(reg.GetMetricValue())


def _sub_volume(array: np.ndarray, geometry: Geometry, lo: np.ndarray, hi: np.ndarray):
    """The part of `array` between voxel indices lo (inclusive) and hi (exclusive), with its geometry."""
    lo = np.clip(lo, 0, np.asarray(geometry.shape)).astype(int)
    hi = np.clip(hi, lo + 1, np.asarray(geometry.shape)).astype(int)
    affine = geometry.affine.copy()
    affine[:3, 3] = geometry.index_to_world(lo.astype(float))
    sub = array[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
    return sub, Geometry(affine, sub.shape)


def _binned(array: np.ndarray, geometry: Geometry, spacing_mm: float, lo: float, hi: float):
    """HU-clipped SimpleITK image binned (block-averaged) to about `spacing_mm`."""
    factors = [max(1, int(round(spacing_mm / s))) for s in geometry.spacing]
    img = to_sitk(np.clip(array, lo, hi).astype(np.float32), geometry)
    return sitk.BinShrink(img, factors) if max(factors) > 1 else img


_MIN_REGISTRATION_VOXELS = 4


class _ThinFixedImage(RuntimeError):
    """The PV liver region is too thin for the registration pyramid (the PV is at fault, not the moving)."""


def liver_transform(pv: np.ndarray, pv_geom: Geometry, moving: np.ndarray, moving_geom: Geometry,
                    liver_mask: np.ndarray,
                    settings: LiverRegistrationSettings | None = None) -> RigidTransform:
    """Label-free rigid registration of the liver region (translation stage, then Euler3D)."""
    settings = settings or LiverRegistrationSettings()
    lo_hu, hi_hu = settings.hu_window
    idx = np.argwhere(liver_mask)
    pad = np.ceil(settings.mask_dilation_mm / pv_geom.spacing) + 2
    fixed_arr, fixed_geom = _sub_volume(pv, pv_geom, idx.min(axis=0) - pad, idx.max(axis=0) + pad + 1)
    mask_arr, _ = _sub_volume(liver_mask.astype(np.float32), pv_geom, idx.min(axis=0) - pad,
                              idx.max(axis=0) + pad + 1)
    # the moving image only needs the fixed region plus the largest expected motion
    lo_w, hi_w = world_bounds(fixed_geom)
    corners = np.array([[x, y, z] for x in (lo_w[0], hi_w[0]) for y in (lo_w[1], hi_w[1])
                        for z in (lo_w[2], hi_w[2])])
    m_idx = moving_geom.world_to_index(corners)
    m_pad = np.ceil(settings.max_motion_mm / moving_geom.spacing)
    mov_arr, mov_geom = _sub_volume(moving, moving_geom, np.floor(m_idx.min(axis=0)) - m_pad,
                                    np.ceil(m_idx.max(axis=0)) + m_pad + 1)
    fixed = _binned(fixed_arr, fixed_geom, settings.working_spacing_mm, lo_hu, hi_hu)
    if min(fixed.GetSize()) < _MIN_REGISTRATION_VOXELS:  # ITK's smoothing needs 4 voxels along each axis
        raise _ThinFixedImage(
            f"the PV liver region is {' x '.join(str(n) for n in fixed.GetSize())} voxels at the liver "
            f"registration's {settings.working_spacing_mm:g} mm working spacing (the PV has "
            f"{axial_slice_count(pv_geom)} axial slice(s)); it needs at least "
            f"{_MIN_REGISTRATION_VOXELS} along each axis: too few PV slices over the liver")
    mov = _binned(mov_arr, mov_geom, settings.working_spacing_mm, lo_hu, hi_hu)
    mask = _binned(mask_arr, fixed_geom, settings.working_spacing_mm, 0.0, 1.0) > 0.0
    radius = [max(1, int(np.ceil(settings.mask_dilation_mm / s))) for s in mask.GetSpacing()]
    mask = sitk.BinaryDilate(sitk.Cast(mask, sitk.sitkUInt8), radius, sitk.sitkBall)

    translation, metric = _register(fixed, mov, mask, sitk.TranslationTransform(3), settings, slice(None))
    offset = _lps_affine(translation)[1]
    final = translation
    if settings.rigid:
        centre = ras_to_lps(pv_geom.index_to_world(idx.mean(axis=0)))
        euler = sitk.Euler3DTransform()
        euler.SetCenter([float(c) for c in centre])
        euler.SetTranslation([float(v) for v in offset])
        final, metric = _register(fixed, mov, mask, euler, settings, slice(len(settings.shrink) - 1, None))
    return RigidTransform(*ras_to_lps_map(*_lps_affine(final)), "liver", metric)


def _lps_affine(tx) -> tuple[np.ndarray, np.ndarray]:
    """(M, off) of a registration result read as p_moving = M p + off (LPS)."""
    if isinstance(tx, sitk.CompositeTransform):
        tx = tx.GetBackTransform()
    if tx.GetName() == "TranslationTransform":
        return np.eye(3), np.asarray(sitk.TranslationTransform(tx).GetOffset())
    e = sitk.Euler3DTransform(tx)
    m = np.asarray(e.GetMatrix()).reshape(3, 3)
    c = np.asarray(e.GetCenter())
    return m, np.asarray(e.GetTranslation()) + c - m @ c


def register_phase(method: str, pv: np.ndarray, pv_geom: Geometry, moving: np.ndarray, moving_geom: Geometry,
                   liver_mask: np.ndarray | None = None, pv_label: np.ndarray | None = None,
                   moving_label: np.ndarray | None = None, moving_path: str | Path | None = None,
                   moving_label_path: str | Path | None = None,
                   settings: LiverRegistrationSettings | None = None,
                   fixed_path: str | Path | None = None) -> tuple[np.ndarray, RigidTransform]:
    """Register one phase onto the PV grid; returns (the phase resampled on the PV grid, the transform).

    `fixed_path` (the PV file) is named when the PV itself is the problem (too thin a liver region)."""
    if method not in METHODS:
        raise ValueError(f"registration must be one of {METHODS}, got '{method}'")
    check_overlap(pv_geom, moving_geom, moving_path)
    if method == "tumor-center" and pv_label is None:
        raise InputError("tumor-center registration needs the PV label", moving_path)
    if (method == "tumor-center" and moving_label is not None and not np.any(pv_label == TUMOR)
            and not np.any(moving_label == TUMOR) and liver_mask is not None and np.any(liver_mask)):
        method = "liver"  # a lesion-free case (both labels): no tumour centre to align, the liver aligns it
    if method == "none":
        transform = RigidTransform()
    elif method == "tumor-center":
        transform = tumor_center_transform(pv_label, pv_geom, moving_label, moving_geom, moving_label_path)
    else:
        if liver_mask is None or not np.any(liver_mask):
            raise InputError("liver registration needs a non-empty PV liver mask", moving_path)
        try:
            transform = liver_transform(pv, pv_geom, moving, moving_geom, liver_mask, settings)
        except _ThinFixedImage as exc:
            raise InputError(str(exc), fixed_path) from None
        except RuntimeError as exc:  # ITK, e.g. "All samples map outside moving image buffer"
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or ["unknown error"]
            detail = lines[-1].split("): ", 1)[-1]  # drop ITK's "ITK ERROR: Filter(0x...)" prefix
            raise InputError(f"liver registration failed ({detail[:200]}); does this phase cover the liver?",
                             moving_path) from None
    return resample_to_grid(moving, moving_geom, pv_geom, fill=FILL_HU, transform=transform), transform


def liver_aligner(settings: LiverRegistrationSettings | None = None
                  ) -> Callable[[CaseVolumes, str, Path], tuple[np.ndarray, dict]]:
    """A phase aligner for `io.nnunet.export_nnunet`: the label-free liver registration that predict uses,
    with the liver of the case's reference label (labels > 0) as the PV liver mask, as training prep does."""

    def align(vols: CaseVolumes, phase: str, moving_path: Path) -> tuple[np.ndarray, dict]:
        if vols.label is None or not np.any(vols.label >= LIVER):
            raise InputError(f"--register needs the PV liver from the label, and case {vols.case_id} has "
                             "none (imagesTs cases cannot be registered this way)", moving_path)
        pv_name = next(iter(vols.phases))
        on_pv, transform = register_phase("liver", vols.phases[pv_name], vols.geometries[pv_name],
                                          vols.phases[phase], vols.geometries[phase],
                                          liver_mask=vols.label >= LIVER,
                                          moving_path=moving_path, settings=settings)
        return on_pv, transform.to_dict()

    return align
