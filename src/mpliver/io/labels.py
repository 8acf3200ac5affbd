"""Label values, tumour types and phase names: the one home of these facts of the case layout
(docs/method.md §2).

Every module that compares a label map with a value, orders tumour types or names a default phase imports
them from here, so a change of convention is one edit.
"""

from __future__ import annotations

from collections.abc import Iterable

BACKGROUND = 0
LIVER = 1  # liver parenchyma; the liver region is label >= LIVER (parenchyma and tumour)
TUMOR = 2
LABELS = {"background": BACKGROUND, "liver": LIVER, "tumor": TUMOR}  # as written in dataset.json
# a training target value (never in a file) that counts in no loss term and not in the validation Dice:
# torch's cross-entropy `ignore_index` default
IGNORE_INDEX = -100

TUMOR_TYPES = ("cyst", "FNH", "HEM", "HCC", "METS")  # the paper's five types, in its table order

PRIMARY_PHASE = "PV"  # the default primary phase: channel 0, the grid every other phase is registered onto
DEFAULT_PHASES = (PRIMARY_PHASE, "ART")  # the paper's protocol, primary first


def type_order(seen: Iterable[str]) -> list[str]:
    """Tumour types in table order: the five of the table first, then any others alphabetically."""
    seen = set(seen)
    return [t for t in TUMOR_TYPES if t in seen] + sorted(t for t in seen if t not in TUMOR_TYPES)
