"""What a prediction is set to do beside the weights: the phases, the pre-processing, the registration and
the liver-check strictness of its bundle(s) (`PredictSettings`), and the network's precision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mpliver.data.config import INFERENCE_REGISTRATIONS, PreprocessConfig
from mpliver.errors import ConfigError
from mpliver.inference.bundle import Bundle
from mpliver.inference.postprocess import Postprocess

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    """`precision` of the network stage if known ('auto': bf16 autocast on GPU, fp32 on the CPU; 'fp32';
    'bf16': bf16 autocast on any device), else a one-line ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return precision


@dataclass(frozen=True)
class PredictSettings:
    """What the CPU stages need from the bundle(s) and the options: plain data without weights, so that a
    preparation process of the batch pipeline receives it cheaply."""

    phases: tuple[str, ...]
    preprocess: PreprocessConfig
    registration: str
    strict: bool = False
    bundle_path: Path | None = None
    postprocess: Postprocess = Postprocess()


def predict_settings(bundles: Sequence[Bundle], registration: str | None = None,
                     strict: bool = False, postprocess: Postprocess | None = None) -> PredictSettings:
    """The settings of a prediction with `bundles` (checked by `load_ensemble`); a ConfigError for an
    unknown registration method. `postprocess` turns the probability into the mask (default: p > 0.5)."""
    bundle = bundles[0]
    method = registration or bundle.preprocess.registration
    if method not in INFERENCE_REGISTRATIONS:
        raise ConfigError(f"registration at inference must be 'liver' or 'none', got '{method}'")
    return PredictSettings(tuple(bundle.phases), bundle.preprocess, method, strict, bundle.path,
                           postprocess or Postprocess())
