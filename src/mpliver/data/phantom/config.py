"""Size, spacing, noise and motion settings of the synthetic cohort (docs/method.md §6).

The default is sized for a 2-core CPU: 160×160×48 voxels at 2×2×4 mm (a 320×320×192 mm field of view),
which keeps lesions several voxels wide while `mpliver phantom OUT --cases 121` finishes in minutes.
`PhantomConfig.paper()` gives the paper's 512×512 in-plane grid at 0.7 mm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mpliver.data.phantom.kinetics import parse_phases
from mpliver.errors import ConfigError, check_known_fields
from mpliver.io.labels import DEFAULT_PHASES

GENERATOR_VERSION = "mpliver-phantom-2"  # 2: contrast kinetics, any phase set, domain randomisation

Pair = tuple[float, float]


@dataclass(frozen=True)
class PhantomConfig:
    """Grid and acquisition settings. Anatomy scales with the field of view; lesion sizes are in mm."""

    shape: tuple[int, int, int] = (160, 160, 48)
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0)
    noise_sd: tuple[float, float] = (9.0, 18.0)  # per-case Gaussian σ (HU), drawn uniformly (SPEC: 8-20)
    noise_blur_vox: float = 0.6  # in-plane Gaussian blur of the noise (voxels): "lightly blurred"
    motion_sd_mm: tuple[float, float, float] = (2.0, 2.0, 4.0)  # LR, AP, head-foot (docs/method.md §6)
    motion_clip_mm: tuple[float, float, float] = (6.0, 6.0, 10.0)
    deformation_mm: float = 1.0  # amplitude of the smooth deformation on top of the rigid shift
    art_slice_jitter: int = 2  # the ART scan covers up to this many slices more or fewer than PV
    art_origin_jitter_mm: float = 6.0  # the ART grid's slice origin moves by up to this (mm)
    lesion_scale: float = 1.0  # multiplies all lesion diameters
    phases: tuple[str, ...] = DEFAULT_PHASES  # time points written, the first is the primary (kinetics.py)
    # Domain randomisation (docs/phantom.md), drawn per case; the defaults keep the paper-like cohort.
    hu_offset: Pair = (0.0, 0.0)  # global HU offset per phase
    hu_scale: Pair = (1.0, 1.0)  # global HU scale per phase (about 0 HU)
    kernel_sharpness: Pair = (0.0, 0.0)  # 0 smooth kernel (blurred noise) .. 1 sharp (high-pass noise)
    inplane_mm: Pair | None = None  # per-case in-plane spacing; the field of view stays, the grid changes
    fov_scale: Pair = (1.0, 1.0)  # per-case in-plane field of view / the config's (the body keeps its size)
    slice_mm: Pair | None = None  # per-case slice spacing
    thickness_ratio: Pair = (1.0, 1.0)  # slice thickness / slice spacing (partial volume along z)
    max_thickness_mm: float = 5.0  # the ratio never makes a slice thicker than this (or than its spacing)
    body_scale: Pair = (0.92, 1.03)  # in-plane body size
    fat_mm: Pair = (8.0, 22.0)  # subcutaneous fat
    liver_variety: float = 0.0  # 0..1: liver deformation, left-lobe size, caudate lobe
    diaphragm_mm: Pair = (0.0, 0.0)  # muscle (diaphragm, lateral wall) on the liver's upper-outer surface
    lesion_scale_range: Pair = (1.0, 1.0)  # per-case lesion size factor (log-uniform), on top of lesion_scale
    extra_lesions: int = 0  # up to this many lesions more than the type's count distribution
    no_lesion_prob: float = 0.0  # share of cases without a lesion
    fov_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # body shift, fraction of the field of view
    streak_prob: float = 0.0  # share of cases with streak artefacts
    streak_hu: Pair = (20.0, 80.0)  # their amplitude
    timing_variety: float = 0.0  # share of contrast phases scanned at any time 0-300 s (kinetics.py)
    cirrhosis_prob: float = 0.0  # share of cases with a cirrhotic liver (cirrhosis.py)
    multifocal_prob: float = 0.0  # share of METS, HCC and cyst cases with 6-20 lesions (lesions.LesionSpread)
    subcapsular_share: float = 0.0  # share of lesions that reach the liver surface, cut by the capsule

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
        object.__setattr__(self, "phases", parse_phases(self.phases))
        for name in ("hu_offset", "hu_scale", "kernel_sharpness", "thickness_ratio", "body_scale", "fat_mm",
                     "fov_scale", "diaphragm_mm",
                     "lesion_scale_range", "streak_hu", "inplane_mm", "slice_mm"):
            value = getattr(self, name)
            if value is None and name in ("inplane_mm", "slice_mm"):
                continue
            pair = tuple(float(v) for v in value)
            if len(pair) != 2 or not pair[0] <= pair[1]:
                raise ConfigError(f"phantom {name} must be a (low, high) pair with low <= high, got {value}")
            object.__setattr__(self, name, pair)
        checks = {
            "hu_scale": self.hu_scale[0] > 0, "thickness_ratio": self.thickness_ratio[0] >= 1.0,
            "fov_scale": self.fov_scale[0] > 0, "diaphragm_mm": self.diaphragm_mm[0] >= 0,
            "inplane_mm": self.inplane_mm is None or self.inplane_mm[0] > 0,
            "slice_mm": self.slice_mm is None or self.slice_mm[0] > 0,
            "body_scale": self.body_scale[0] > 0, "lesion_scale_range": self.lesion_scale_range[0] > 0,
            "kernel_sharpness": 0.0 <= self.kernel_sharpness[0] and self.kernel_sharpness[1] <= 1.0,
            "liver_variety": 0.0 <= self.liver_variety <= 1.0, "extra_lesions": self.extra_lesions >= 0,
            "no_lesion_prob": 0.0 <= self.no_lesion_prob < 1.0, "streak_prob": 0.0 <= self.streak_prob <= 1.0,
            "timing_variety": 0.0 <= self.timing_variety <= 1.0,
            "cirrhosis_prob": 0.0 <= self.cirrhosis_prob <= 1.0,
            "multifocal_prob": 0.0 <= self.multifocal_prob <= 1.0,
            "subcapsular_share": 0.0 <= self.subcapsular_share <= 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"phantom {bad[0]} out of range: {getattr(self, bad[0])}")
        object.__setattr__(self, "fov_shift", tuple(float(v) for v in self.fov_shift))

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

    def randomized(self) -> PhantomConfig:
        """This grid with domain randomisation on (sim-to-real training; docs/phantom.md): ranges wider
        than real scanners show. Spacing ranges are the issue's (0.6-0.9 mm in-plane, 0.6-5 mm slices) at
        a paper-size grid, and the same relative spread around the grid's own spacing otherwise."""
        sx, sz = self.spacing[0], self.spacing[2]
        paper_like = sx <= 1.0
        inplane = (0.6, 0.9) if paper_like else (0.8 * sx, 1.2 * sx)
        slices = (0.6, 5.0) if paper_like else (max(0.6, 0.4 * sz), 1.25 * sz)
        return replace(
            self, noise_sd=(8.0, 25.0), kernel_sharpness=(0.0, 1.0), hu_offset=(-20.0, 20.0),
            hu_scale=(0.92, 1.08), inplane_mm=inplane, slice_mm=slices, thickness_ratio=(1.0, 1.6),
            fov_scale=(0.85, 1.45),
            body_scale=(0.8, 1.12), fat_mm=(3.0, 45.0), liver_variety=1.0, diaphragm_mm=(0.0, 8.0),
            lesion_scale_range=(0.45, 1.6),
            extra_lesions=3, no_lesion_prob=0.1, fov_shift=(0.12, 0.08, 0.15), streak_prob=0.4,
            cirrhosis_prob=0.5,
            # timing_variety stays 0: one sim-to-real run with 0.25 scored lower on every real CT
            # (docs/results.md); the option remains for experiments.
        )

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
