"""The synthetic multi-phase CT cohort of docs/method.md §6: a procedural liver phantom with five lesion types
whose phases are time points on contrast-enhancement curves (default PV + ART; any ordered set,
docs/phantom.md), with inter-phase motion, noise, partial volume and optional domain randomisation, written in
the docs/method.md §2 case layout."""

from mpliver.data.phantom.case import SyntheticCase, case_id_for, generate_case
from mpliver.data.phantom.cohort import (
    PAPER_COMPOSITION,
    cohort_composition,
    cohort_types,
    write_case,
    write_cohort,
)
from mpliver.data.phantom.config import GENERATOR_VERSION, PhantomConfig
from mpliver.data.phantom.lesions import LESION_TYPES

__all__ = [
    "GENERATOR_VERSION",
    "LESION_TYPES",
    "PAPER_COMPOSITION",
    "PhantomConfig",
    "SyntheticCase",
    "case_id_for",
    "cohort_composition",
    "cohort_types",
    "generate_case",
    "write_case",
    "write_cohort",
]
