"""Size, spacing, noise and motion settings of the synthetic cohort (SPEC §6).

The default is sized for a 2-core CPU: 160×160×48 voxels at 2×2×4 mm (a 320×320×192 mm field of view),
which keeps lesions several voxels wide while `mpliver phantom OUT --cases 121` finishes in minutes.
`PhantomConfig.paper()` gives the paper's 512×512 in-plane grid at 0.7 mm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mpliver.errors import ConfigError, check_known_fields

GENERATOR_VERSION = "mpliver-phantom-1"


@dataclass(frozen=True)
class PhantomConfig:
    """Grid and acquisition settings. Anatomy scales with the field of view; lesion sizes are in mm."""

    shape: tuple[int, int, int] = (160, 160, 48)
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0)
    noise_sd: tuple[float, float] = (9.0, 18.0)  # per-case Gaussian σ (HU), drawn uniformly (SPEC: 8-20)
    noise_blur_vox: float = 0.6  # in-plane Gaussian blur of the noise (voxels): "lightly blurred"
    motion_sd_mm: tuple[float, float, float] = (2.0, 2.0, 4.0)  # LR, AP, head-foot (SPEC §6)
    motion_clip_mm: tuple[float, float, float] = (6.0, 6.0, 10.0)
    deformation_mm: float = 1.0  # amplitude of the smooth deformation on top of the rigid shift
    art_slice_jitter: int = 2  # the ART scan covers up to this many slices more or fewer than PV
    art_origin_jitter_mm: float = 6.0  # the ART grid's slice origin moves by up to this (mm)
    lesion_scale: float = 1.0  # multiplies all lesion diameters

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        if len(shape) != 3 or min(shape) < 8:
            raise ConfigError(f"phantom shape must be three sizes of at least 8 voxels, got {self.shape}")
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ConfigError(f"phantom spacing must be three positive values in mm, got {self.spacing}")
        lo, hi = self.noise_sd
        if not 0 <= lo <= hi:
            raise ConfigError(f"noise_sd must be (low, high) with 0 <= low <= high, got {self.noise_sd}")
        if self.lesion_scale <= 0:
            raise ConfigError(f"lesion_scale must be positive, got {self.lesion_scale}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "noise_sd", (float(lo), float(hi)))
        object.__setattr__(self, "motion_sd_mm", tuple(float(v) for v in self.motion_sd_mm))
        object.__setattr__(self, "motion_clip_mm", tuple(float(v) for v in self.motion_clip_mm))

    @property
    def field_of_view_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing, strict=True))  # type: ignore[return-value]

    @classmethod
    def small(cls) -> PhantomConfig:
        """The default: 160×160×48 at 2×2×4 mm."""
        return cls()

    @classmethod
    def paper(cls) -> PhantomConfig:
        """The paper's in-plane grid: 512×512 at 0.7 mm (358 mm field of view), 64 slices at 3 mm."""
        return cls(shape=(512, 512, 64), spacing=(0.7, 0.7, 3.0))

    @classmethod
    def preset(cls, name: str) -> PhantomConfig:
        presets = {"small": cls.small, "paper": cls.paper}
        if name not in presets:
            raise ConfigError(f"unknown phantom size '{name}' (choose from {', '.join(presets)})")
        return presets[name]()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhantomConfig:
        check_known_fields(cls, d, "phantom config key(s)")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
