"""Pre-processing parameters (docs/method.md §3 "Input", §4) in one dataclass, for the cache manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mpliver.errors import ConfigError, check_known_fields

REGISTRATIONS = ("tumor-center", "liver", "none")
LIVER_MASK_SOURCES = ("label", "file", "model")
KEEP_SLICES = ("liver", "all")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a case becomes network input.

    - `window`: HU window, clipped and scaled to [0, 1] (the paper's [-70, 180]).
    - `input_size`: slices are resized to input_size x input_size.
    - `crop`: True crops each case to its liver bounding box (in-plane) plus `margin_mm`, padded to a square
      in mm; False keeps whole slices (the `paper` preset), padded to a square in mm about the slice centre.
    - `context_slices`: adjacent axial slices per phase (2.5D; 3 in the paper), edge slices replicated.
    - `registration`: how non-PV phases are put on the PV grid: 'tumor-center' (the paper's; needs the
      per-phase label, so training/evaluation parity only), 'liver' (label-free rigid, the default) or 'none'.
    - `liver_mask_source`: 'label' (label >= 1), 'file' (`liver_mask_pattern`, `{case}` is replaced by the
      case id; `liver_mask_values` selects label values, None = any non-zero) or 'model' (a trained liver
      network, passed through the library).
    - `axial_axis`: array axis of the slices; None detects it from the affine (the axis closest to S).
    - `keep_slices`: 'liver' stores the axial range of the liver mask, 'all' every slice (liver model).
    """

    window: tuple[float, float] = (-70.0, 180.0)
    input_size: int = 256
    crop: bool = True
    margin_mm: float = 10.0
    context_slices: int = 3
    registration: str = "liver"
    liver_mask_source: str = "label"
    liver_mask_pattern: str | None = None
    liver_mask_values: tuple[int, ...] | None = None
    axial_axis: int | None = None
    keep_slices: str = "liver"
    cache_dtype: str = "float16"

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.window)
        object.__setattr__(self, "window", (lo, hi))
        if not hi > lo:
            raise ConfigError(f"window must be (low, high) with high > low, got {self.window}")
        if int(self.input_size) < 8:
            raise ConfigError(f"input_size must be at least 8, got {self.input_size}")
        if self.margin_mm < 0:
            raise ConfigError(f"margin_mm must be >= 0, got {self.margin_mm}")
        if self.context_slices < 1 or self.context_slices % 2 == 0:
            raise ConfigError(f"context_slices must be odd and >= 1, got {self.context_slices}")
        if self.registration not in REGISTRATIONS:
            raise ConfigError(f"registration must be one of {REGISTRATIONS}, got '{self.registration}'")
        if self.liver_mask_source not in LIVER_MASK_SOURCES:
            raise ConfigError(
                f"liver_mask_source must be one of {LIVER_MASK_SOURCES}, got '{self.liver_mask_source}'")
        if self.liver_mask_source == "file" and not self.liver_mask_pattern:
            raise ConfigError(
                "liver_mask_source 'file' needs a pattern like 'masks/{case}.nii.gz'")
        if self.axial_axis is not None and self.axial_axis not in (0, 1, 2):
            raise ConfigError(f"axial_axis must be 0, 1, 2 or None, got {self.axial_axis}")
        if self.keep_slices not in KEEP_SLICES:
            raise ConfigError(f"keep_slices must be one of {KEEP_SLICES}, got '{self.keep_slices}'")
        if self.cache_dtype not in ("float16", "float32"):
            raise ConfigError(f"cache_dtype must be float16 or float32, got '{self.cache_dtype}'")
        if self.liver_mask_values is not None:
            object.__setattr__(self, "liver_mask_values", tuple(int(v) for v in self.liver_mask_values))

    @property
    def halo(self) -> int:
        """Slices on each side of the centre slice in a 2.5D stack."""
        return self.context_slices // 2

    @classmethod
    def paper(cls, **overrides: Any) -> PreprocessConfig:
        """The paper's input: whole 512x512 slices, tumour-centre registration."""
        base = cls(input_size=512, crop=False, registration="tumor-center")
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window)
        if self.liver_mask_values is not None:
            d["liver_mask_values"] = list(self.liver_mask_values)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        check_known_fields(cls, d, "pre-processing parameter(s)")
        d = dict(d)
        if "window" in d:
            d["window"] = tuple(d["window"])
        if d.get("liver_mask_values") is not None:
            d["liver_mask_values"] = tuple(d["liver_mask_values"])
        return cls(**d)
