"""Pre-processing parameters (docs/method.md §3 "Input", §4) in one dataclass, so the cache manifest can
record them.

A training run holds one as `Config.data.preprocess`; `require` is the validation rule every config dataclass
of mpliver follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mpliver.errors import ConfigError, check_known_fields

REGISTRATIONS = ("tumor-center", "liver", "none")
INFERENCE_REGISTRATIONS = ("liver", "none")  # label-free: what a new study can be registered with
LIVER_MASK_SOURCES = ("label", "file", "model")
KEEP_SLICES = ("liver", "all")
# the phase the liver model reads in training: the primary, or one drawn per slice (data.liver_phase)
LIVER_PHASES = ("primary", "any")
CACHE_DTYPES = ("float16", "float32")


def require(ok: bool, key: str, why: str, value: Any) -> None:
    """The one validation style of mpliver's config dataclasses: each `__post_init__` states its rules as
    `require(ok, key, why, value)`, and a broken rule is a one-line `ConfigError` that starts with the key,
    so a config that nests this one (training's `data.preprocess`) can prefix the path it sits at."""
    if not ok:
        raise ConfigError(f"{key} {why} (got {value!r})")


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
        if self.liver_mask_values is not None:
            object.__setattr__(self, "liver_mask_values", tuple(int(v) for v in self.liver_mask_values))
        require(hi > lo, "window", "must be (low, high) with high > low", self.window)
        require(int(self.input_size) >= 8, "input_size", "must be at least 8", self.input_size)
        require(self.margin_mm >= 0, "margin_mm", "must be >= 0", self.margin_mm)
        require(self.context_slices >= 1 and self.context_slices % 2 == 1, "context_slices",
                "must be odd and >= 1", self.context_slices)
        require(self.registration in REGISTRATIONS, "registration", f"must be one of {REGISTRATIONS}",
                self.registration)
        require(self.liver_mask_source in LIVER_MASK_SOURCES, "liver_mask_source",
                f"must be one of {LIVER_MASK_SOURCES}", self.liver_mask_source)
        require(self.liver_mask_source != "file" or bool(self.liver_mask_pattern), "liver_mask_pattern",
                "is needed by liver_mask_source 'file' (a pattern like 'masks/{case}.nii.gz')",
                self.liver_mask_pattern)
        require(self.axial_axis in (None, 0, 1, 2), "axial_axis", "must be 0, 1, 2 or None", self.axial_axis)
        require(self.keep_slices in KEEP_SLICES, "keep_slices", f"must be one of {KEEP_SLICES}",
                self.keep_slices)
        require(self.cache_dtype in CACHE_DTYPES, "cache_dtype", f"must be one of {CACHE_DTYPES}",
                self.cache_dtype)

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
        """Plain values (lists for tuples), as the cache manifest, bundles and `config.yaml` store them."""
        d = asdict(self)
        d["window"] = list(self.window)
        if self.liver_mask_values is not None:
            d["liver_mask_values"] = list(self.liver_mask_values)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """The inverse of `to_dict`; an unknown key is a `ConfigError` naming it."""
        check_known_fields(cls, d, "pre-processing parameter(s)")
        d = dict(d)
        if "window" in d:
            d["window"] = tuple(d["window"])
        if d.get("liver_mask_values") is not None:
            d["liver_mask_values"] = tuple(d["liver_mask_values"])
        return cls(**d)
