"""The label values, tumour types and phase names have one home, and the writers follow it."""

from __future__ import annotations

import json

from mpliver.io.labels import (
    BACKGROUND,
    DEFAULT_PHASES,
    LABELS,
    LIVER,
    PRIMARY_PHASE,
    TUMOR,
    TUMOR_TYPES,
    type_order,
)
from mpliver.io.layout import write_dataset_json


def test_labels_and_dataset_json_agree(tmp_path):
    assert (BACKGROUND, LIVER, TUMOR) == (0, 1, 2)
    write_dataset_json(tmp_path, list(DEFAULT_PHASES), 0)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["labels"] == LABELS
    assert meta["channel_names"]["0"] == PRIMARY_PHASE == DEFAULT_PHASES[0]


def test_type_order_puts_the_table_types_first():
    assert type_order(["zeta", "HCC", "alpha", "cyst"]) == ["cyst", "HCC", "alpha", "zeta"]
    assert type_order(TUMOR_TYPES) == list(TUMOR_TYPES)
