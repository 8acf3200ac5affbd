"""Is a liver mask plausible? Three measurements of the liver stage's output: checked, not trusted.

- Volume (mL, from the voxel volume). Adult livers measured by CT volumetry lie in about 0.6-2.3 L: 594-2250
  mL in 369 adults (Feng LM et al., "New formula for predicting standard liver volume in Chinese adults",
  World J Gastroenterol 2017;23(27):4968-4977, doi:10.3748/wjg.v23.i27.4968). Western livers are larger:
  1505 +- 385 mL in 2773 adults of the Study of Health in Pomerania (MRI, volume estimated from the three
  maximum diameters), 1624 +- 420 mL with parenchymal liver
  disease (Kromrey ML et al., "Reference values of liver volume in Caucasian population and factors
  influencing liver size", Eur J Radiol 2018;106:32-37, doi:10.1016/j.ejrad.2018.07.005). The range used
  here runs from the smallest CT volume of the first study (590 mL) to the mean + 3 SD of the diseased
  livers of the second (1624 + 3 x 420 = 2884 mL, rounded to 2900). A mask that reaches the first or last
  axial slice may be cut by the scan's field of view: it is only checked against the upper limit.
- Border slices: on how many of its axial slices the mask touches the in-plane image border. A liver inside
  the field of view touches it on few slices; a mask that fills the image touches it on every slice.
- Share of the body: the part of the body (voxels above -500 HU, largest 26-connected component) that the
  mask covers. The liver is a fifth of the abdomen at most; a mask that marks most of the body is not a
  liver.
- Side: the liver lies on the patient's right. A mask whose centre lies more than `MAX_LEFT_MM` to the
  patient's left of the body's centre (in the header's world frame) means a header whose left-right axis is
  mirrored or lost (an identity affine, an export that flipped an axis) or, rarely, situs inversus. The
  networks were trained on correctly oriented slices, so their output on a mirrored study is not trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from mpliver.data.orientation import slice_orientation
from mpliver.io.geometry import Geometry

LIVER_VOLUME_RANGE_ML = (590.0, 2900.0)
LIVER_VOLUME_SOURCES = (
    "Feng et al., World J Gastroenterol 2017;23:4968-4977 (CT volumetry, 369 adults, 594-2250 mL)",
    "Kromrey et al., Eur J Radiol 2018;106:32-37 (2773 adults, 1624 +- 420 mL with liver disease)",
)
MAX_BORDER_SHARE = 0.5  # of the mask's axial slices
MAX_BODY_SHARE = 0.5
MAX_LEFT_MM = 20.0  # the liver's centre may lie this far to the patient's left of the body's centre
BODY_HU = -500.0


@dataclass
class LiverCheck:
    """The measurements of one liver mask and the reasons (`problems`) it looks implausible, if any."""

    volume_ml: float
    slices: int  # axial slices that hold liver
    border_slices: int  # of those, the ones on which the mask touches the in-plane image border
    body_share: float | None  # liver voxels in the body / body voxels (None: no body found)
    cut_by_scan: bool  # the mask reaches the first or last axial slice
    right_of_body_mm: float | None = None  # liver centre minus body centre along the patient's right (mm)
    volume_range_ml: tuple[float, float] = LIVER_VOLUME_RANGE_ML
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # short names of the problems: volume, border, body, side

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self, case_id: str, origin: str) -> str:
        """One line for the console: which case, where the mask came from, and every reason."""
        return f"case {case_id}: implausible liver mask ({origin}): {'; '.join(self.problems)}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["volume_range_ml"] = list(self.volume_range_ml)
        d["plausible"] = self.ok
        d["volume_sources"] = list(LIVER_VOLUME_SOURCES)
        return d


def body_mask(image: np.ndarray, threshold_hu: float = BODY_HU) -> np.ndarray:
    """The body: voxels above `threshold_hu`, largest 26-connected component (drops the table, air noise)."""
    above = np.asarray(image) > threshold_hu
    labels, n = ndimage.label(above, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return above
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def check_liver(liver: np.ndarray, image: np.ndarray, geometry: Geometry, axial_axis: int | None = None,
                volume_range_ml: tuple[float, float] = LIVER_VOLUME_RANGE_ML,
                max_border_share: float = MAX_BORDER_SHARE, max_body_share: float = MAX_BODY_SHARE,
                body_hu: float = BODY_HU, max_left_mm: float = MAX_LEFT_MM) -> LiverCheck:
    """Measure a liver mask on the PV grid against the PV image (HU) and list what makes it implausible."""
    liver = np.asarray(liver, dtype=bool)
    if liver.shape != tuple(geometry.shape) or np.shape(image) != liver.shape:
        raise ValueError(f"liver mask {liver.shape}, image {np.shape(image)} and geometry {geometry.shape} "
                         "differ")
    voxel_ml = abs(float(np.linalg.det(geometry.affine[:3, :3]))) / 1000.0
    volume = float(liver.sum()) * voxel_ml
    slabs = slice_orientation(geometry, axial_axis).to_slices(liver)  # (K, H, W)
    per_slice = slabs.reshape(len(slabs), -1).any(axis=1)
    on_border = (slabs[:, 0, :].any(axis=1) | slabs[:, -1, :].any(axis=1) | slabs[:, :, 0].any(axis=1)
                 | slabs[:, :, -1].any(axis=1))
    slices, border = int(per_slice.sum()), int(on_border.sum())
    cut = bool(per_slice[0] or per_slice[-1])
    body = body_mask(image, body_hu)
    body_share = float((liver & body).sum() / body.sum()) if body.any() else None
    right_mm = None
    if liver.any() and body.any():  # RAS: x grows towards the patient's right
        centres = np.array([ndimage.center_of_mass(liver), ndimage.center_of_mass(body)])  # no index lists
        centre = geometry.index_to_world(centres)
        right_mm = float(centre[0, 0] - centre[1, 0])

    lo, hi = volume_range_ml
    check = LiverCheck(volume, slices, border, body_share, cut, right_mm, (float(lo), float(hi)))
    if volume > hi:
        check.problems.append(f"volume {volume:.0f} mL is above {hi:.0f} mL, the largest adult liver "
                              "expected from CT/MR volumetry (Feng 2017, Kromrey 2018)")
        check.flags.append("volume")
    elif volume < lo and not cut:
        check.problems.append(f"volume {volume:.0f} mL is below {lo:.0f} mL, the smallest adult liver in CT "
                              "volumetry (Feng 2017), and the mask is not cut by the scan")
        check.flags.append("volume")
    if slices and border > max_border_share * slices:
        check.problems.append(f"the mask touches the image border on {border} of its {slices} slices")
        check.flags.append("border")
    if body_share is not None and body_share > max_body_share:
        check.problems.append(f"the mask covers {100 * body_share:.0f}% of the body (voxels above "
                              f"{body_hu:.0f} HU)")
        check.flags.append("body")
    if right_mm is not None and right_mm < -max_left_mm:
        check.problems.append(f"the liver lies {-right_mm:.0f} mm to the patient's left of the body's "
                              "centre: the header's left-right axis may be mirrored or lost (or situs "
                              "inversus)")
        check.flags.append("side")
    return check
