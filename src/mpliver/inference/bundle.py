"""A model bundle: everything `predict` needs in one file (`model.mpliver`), and nothing it must guess.

The file is a `torch.save` dict of tensors and plain containers, read with `torch.load(weights_only=True)`
(opening a bundle never runs pickled code). It holds:
- `tumor`: the tumour model's `ModelConfig` (name, overrides resolved, number of phases) and its weights;
- `liver`: the stage-1 liver model's config, weights and slice input (size, window, context), or None;
- `phases`: the phase names in the model's input order (PV first);
- `preprocess`: the `PreprocessConfig` used at inference (window, input size, crop, margin, registration,
  liver-mask source);
- `training`: what the model was trained on (synthetic or real, number of cases, dataset, run, epoch);
- `mpliver_version`, `format` and `format_version`. A reader refuses a newer format or another major version
  with one line.
`mpliver bundle RUN_DIR --out model.mpliver [--liver-run LIVER_RUN]` builds one from training run folders
(`experiments.packaging`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpliver._version import __version__
from mpliver.data.config import PreprocessConfig
from mpliver.errors import ConfigError, MpliverError
from mpliver.io.atomic import atomic_path
from mpliver.models import ModelConfig, build_model
from mpliver.models.inference_copy import inference_model

FORMAT = "mpliver-bundle"
FORMAT_VERSION = 1
SUFFIX = ".mpliver"


class BundleError(MpliverError):
    """A bundle that is missing, corrupt, incompatible or inconsistent."""


@dataclass
class LiverStage:
    """The stage-1 liver network and the slice input it was trained on (whole slices, unmasked)."""

    model: nn.Module
    input_size: int
    window: tuple[float, float] = (-70.0, 180.0)
    context_slices: int = 3


@dataclass
class Bundle:
    """A loaded bundle: the rebuilt models (eval mode, on the CPU) and their metadata."""

    tumor_model: nn.Module
    phases: list[str]
    preprocess: PreprocessConfig
    liver: LiverStage | None = None
    training: dict[str, Any] = field(default_factory=dict)
    mpliver_version: str = __version__
    format_version: int = FORMAT_VERSION
    path: Path | None = None
    _fast: dict[tuple[str, str, int], nn.Module] = field(default_factory=dict, init=False, repr=False,
                                                        compare=False)

    def inference_model(self, which: str, device: torch.device) -> nn.Module:
        """The tumour ('tumor') or liver ('liver') network as a `models.inference_model` copy on `device`
        (BN folded, channels_last), made once per network object and device and kept, so that a batch of
        studies pays for it once. The copy does not follow later in-place changes of the weights."""
        model = self.tumor_model if which == "tumor" else (self.liver.model if self.liver else None)
        if model is None:
            raise BundleError(f"the bundle has no {which} model")
        key = (str(device), which, id(model))
        if key not in self._fast:
            self._fast[key] = inference_model(model, device)
        return self._fast[key]

    @property
    def synthetic(self) -> bool:
        """True when the tumour model was trained on the synthetic phantom cohort."""
        return bool(self.training.get("synthetic", False))

    @property
    def model_config(self):
        return self.tumor_model.config

    def describe(self) -> str:
        cfg = self.model_config
        liver = "with a liver model" if self.liver is not None else "no liver model (pass --liver-mask)"
        data = "synthetic" if self.synthetic else "real"
        return (f"{cfg.name} (width {cfg.width}, phases {', '.join(self.phases)}), input "
                f"{self.preprocess.input_size}px {'liver crop' if self.preprocess.crop else 'whole slice'}, "
                f"{liver}; trained on {self.training.get('num_cases', '?')} {data} cases")


def _model_entry(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ConfigError("a bundled model must be an mpliver model (with a ModelConfig in `model.config`)")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"config": config.to_dict(), "state": state, **(extra or {})}


def save_bundle(path: str | Path, tumor_model: nn.Module, phases: list[str], preprocess: PreprocessConfig,
                training: dict[str, Any] | None = None, liver: LiverStage | None = None) -> Path:
    """Write a bundle file atomically and return its path."""
    phases = list(phases)
    if not phases or len(set(phases)) != len(phases):
        raise ConfigError(f"bundle phases must be distinct names, the primary first, got {phases}")
    cfg = tumor_model.config
    single = cfg.input_phases == 1
    if not single and cfg.num_phases != len(phases):
        raise ConfigError(f"the model takes {cfg.num_phases} phases but {len(phases)} names were given: "
                          f"{phases}")
    content = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mpliver_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "phases": phases,
        "tumor": _model_entry(tumor_model),
        "liver": None if liver is None else _model_entry(
            liver.model, {"input_size": int(liver.input_size), "window": [float(v) for v in liver.window],
                          "context_slices": int(liver.context_slices)}),
        "preprocess": preprocess.to_dict(),
        "training": dict(training or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: a full disk is an OSError
        torch.save(content, handle)
    return path


def _major(version: str) -> str:
    return str(version).split(".")[0]


def _rebuild(entry: dict[str, Any], what: str, path: Path) -> nn.Module:
    try:
        model = build_model(ModelConfig.from_dict(entry["config"]))
        model.load_state_dict(entry["state"])
    except (ConfigError, RuntimeError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"the {what} model cannot be rebuilt from the bundle ({reason})", path) from None
    return model.eval()


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle and rebuild its models; a `BundleError` (one line) for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise BundleError("model bundle not found" + (" (a folder was given)" if path.is_dir() else ""), path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"not a readable mpliver model bundle ({reason})", path) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise BundleError("not an mpliver model bundle (build one with `mpliver bundle RUN_DIR`)", path)
    version = content.get("format_version")
    written_by = str(content.get("mpliver_version", "unknown"))
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise BundleError(f"bundle format {version} (written by mpliver {written_by}) is not supported by "
                          f"mpliver {__version__}, which reads format {FORMAT_VERSION}; "
                          "use a matching mpliver version or rebuild the bundle", path)
    if _major(written_by) != _major(__version__):
        raise BundleError(f"bundle written by mpliver {written_by} is incompatible with mpliver "
                          f"{__version__} (different major version); rebuild the bundle", path)
    try:
        phases = [str(p) for p in content["phases"]]
        preprocess = PreprocessConfig.from_dict(content["preprocess"])
        tumor = _rebuild(content["tumor"], "tumour", path)
        liver = None
        if content.get("liver") is not None:
            entry = content["liver"]
            liver = LiverStage(_rebuild(entry, "liver", path), int(entry["input_size"]),
                               tuple(float(v) for v in entry["window"]), int(entry["context_slices"]))
    except (KeyError, TypeError, ConfigError) as exc:
        raise BundleError(f"incomplete or inconsistent bundle ({type(exc).__name__}: {exc})", path) from None
    return Bundle(tumor, phases, preprocess, liver, dict(content.get("training") or {}), written_by, version,
                  path)
