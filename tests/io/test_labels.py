"""Facts with one home: label values, tumour types, phase names and the research notice."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from mpliver.errors import RESEARCH_NOTICE
from mpliver.evaluation.lesion_report import notices
from mpliver.io.geometry import Geometry
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
from mpliver.io.nifti import write_nifti


def test_labels_and_dataset_json_agree(tmp_path):
    assert (BACKGROUND, LIVER, TUMOR) == (0, 1, 2)
    write_dataset_json(tmp_path, list(DEFAULT_PHASES), 0)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["labels"] == LABELS
    assert meta["channel_names"]["0"] == PRIMARY_PHASE == DEFAULT_PHASES[0]


def test_type_order_puts_the_table_types_first():
    assert type_order(["zeta", "HCC", "alpha", "cyst"]) == ["cyst", "HCC", "alpha", "zeta"]
    assert type_order(TUMOR_TYPES) == list(TUMOR_TYPES)


def test_one_research_notice_fits_a_nifti_header_and_reads_back(tmp_path):
    assert "research" in RESEARCH_NOTICE and "not for clinical use" in RESEARCH_NOTICE
    path = write_nifti(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.uint8),
                       Geometry.from_spacing((2, 2, 2), (1, 1, 1)), RESEARCH_NOTICE)
    assert nib.load(path).header["descrip"].item().decode() == RESEARCH_NOTICE
    assert notices(False)[0] == f"{RESEARCH_NOTICE}."  # a sentence in the reports
