"""Several bundles as one model: the mean of their tumour softmax (a fold ensemble, as nnU-Net's -f 0 1 2 3).

Members must read the study the same way: the same phases in the same order and the same pre-processing
(window, input size, crop and margin, context slices, registration, axial axis). Whether a member carries a
liver model does not matter: the liver mask comes from the first member that has one (or from --liver-mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from mpliver.inference.bundle import Bundle, BundleError, load_bundle

# how a bundle says where its liver mask comes from; not part of what the tumour network reads
_LIVER_SOURCE_FIELDS = ("liver_mask_source", "liver_mask_pattern", "liver_mask_values")


def _name(bundle: Bundle, index: int) -> str:
    return str(bundle.path) if bundle.path is not None else f"bundle {index + 1}"


def check_ensemble(bundles: Sequence[Bundle]) -> None:
    """Refuse, in one line naming both bundles, members that differ in phases or pre-processing."""
    first = bundles[0]
    for index, other in enumerate(bundles[1:], start=1):
        where = f"{_name(first, 0)} vs {_name(other, index)}"
        if list(other.phases) != list(first.phases):
            raise BundleError(f"the bundles of an ensemble must take the same phases: {first.phases} vs "
                              f"{other.phases} ({where})")
        for f in fields(first.preprocess):
            if f.name in _LIVER_SOURCE_FIELDS:
                continue
            a, b = getattr(first.preprocess, f.name), getattr(other.preprocess, f.name)
            if a != b:
                raise BundleError(f"the bundles of an ensemble must share their pre-processing: {f.name} "
                                  f"is {a} vs {b} ({where})")


def load_ensemble(model: Bundle | str | Path | Sequence[Bundle | str | Path]) -> list[Bundle]:
    """One bundle or several (paths or loaded), loaded and checked to agree; a one-line error otherwise."""
    items = list(model) if isinstance(model, list | tuple) else [model]
    if not items:
        raise BundleError("no model bundle given")
    bundles = [m if isinstance(m, Bundle) else load_bundle(m) for m in items]
    check_ensemble(bundles)
    return bundles


def liver_bundle(bundles: Sequence[Bundle]) -> Bundle | None:
    """The member whose liver model makes the liver mask: the first that has one."""
    return next((b for b in bundles if b.liver is not None), None)


def model_names(bundles: Sequence[Bundle]) -> list[str]:
    """How the reports name the bundles of a prediction: their absolute paths (the model name when a bundle
    was built in memory)."""
    return [str(Path(b.path).resolve()) if b.path is not None else b.model_config.name for b in bundles]
