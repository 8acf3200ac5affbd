"""The case layout of docs/method.md §2 (nnU-Net v2 raw format; ART may lie on its own grid).

`Dataset` reads and validates `dataset.json` and answers where each file of a case lives; `write_dataset_json`
writes it. File names: `imagesTr/CASE_XXXX.nii.gz` (XXXX = channel index), `labelsTr/CASE.nii.gz` on the PV
grid, optional `labelsTr_phases/CASE_XXXX.nii.gz` (the label on a non-PV phase's grid).
"""

from __future__ import annotations

import difflib
import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpliver.errors import DatasetError, InputWarning
from mpliver.io.atomic import write_json_atomic
from mpliver.io.checks import check_hu, check_label_liver, check_same_grid, check_slices, warn_lost_header
from mpliver.io.geometry import Geometry
from mpliver.io.labels import BACKGROUND, LABELS, TUMOR, TUMOR_TYPES
from mpliver.io.nifti import read_geometry, read_nifti

FILE_ENDING = ".nii.gz"
_TYPE_ALIASES = {"cysts": "cyst", "hemangioma": "HEM", "haemangioma": "HEM", "hem": "HEM", "fnh": "FNH",
                 "hcc": "HCC", "mets": "METS", "met": "METS", "metastasis": "METS", "metastases": "METS"}


def normalize_tumor_type(name: str, allow_other: bool = False, path: str | Path | None = None) -> str:
    """Map a tumour type to its canonical spelling (`cyst`, `FNH`, `HEM`, `HCC`, `METS`), case-insensitively.

    Common long forms (haemangioma, metastasis...) are accepted. Any other type is refused with a one-line
    error naming `path` unless `allow_other` (docs/method.md §2 allows other types; a typo should not pass
    silently).
    """
    text = str(name).strip()
    low = text.lower()
    for t in TUMOR_TYPES:
        if low == t.lower():
            return t
    if low in _TYPE_ALIASES:
        return _TYPE_ALIASES[low]
    if allow_other and text:
        return text
    raise DatasetError(f"unknown tumour type '{text}' (known: {', '.join(TUMOR_TYPES)}; "
                       "pass --allow-other-types to keep other types)", path)


@dataclass
class CaseVolumes:
    """All volumes of one case, read from disk: phases in channel order (PV first) and the PV-grid label."""

    case_id: str
    phases: dict[str, np.ndarray]
    geometries: dict[str, Geometry]
    label: np.ndarray | None = None
    phase_labels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def pv_geometry(self) -> Geometry:
        return next(iter(self.geometries.values()))


class Dataset:
    """A dataset folder in the case layout. Construction validates `dataset.json` (not the images)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.exists():
            raise DatasetError("no dataset.json: not a dataset in the case layout", self.root)
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"invalid JSON ({exc})", meta_path) from None
        self._validate_meta(meta_path)

    # ---- dataset.json -------------------------------------------------------------------------------------
    def _validate_meta(self, meta_path: Path) -> None:
        m = self.meta
        for key in ("channel_names", "labels", "file_ending"):
            if key not in m:
                raise DatasetError(f"missing key '{key}'", meta_path)
        ch = m["channel_names"]
        if not isinstance(ch, Mapping) or sorted(int(k) for k in ch) != list(range(len(ch))):
            raise DatasetError("channel_names must map '0', '1', ... to phase names", meta_path)
        names = [ch[str(i)] for i in range(len(ch))]
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise DatasetError(f"phase names must be non-empty strings, got {names}", meta_path)
        if len(set(names)) != len(names):
            raise DatasetError(f"duplicate phase names in channel_names: {names}", meta_path)
        labels = m["labels"]
        if labels.get("background") != BACKGROUND or labels.get("tumor") != TUMOR:
            raise DatasetError("labels must contain background=0 and tumor=2 (liver=1)", meta_path)
        if m["file_ending"] != FILE_ENDING:
            raise DatasetError(f"file_ending must be '{FILE_ENDING}', got '{m['file_ending']}'", meta_path)
        for case, info in (m.get("cases") or {}).items():
            ttype = info.get("tumor_type")
            if ttype is not None and not isinstance(ttype, str):
                raise DatasetError(f"case {case}: tumor_type must be a string", meta_path)
            fold = info.get("fold")
            if fold is not None and (not isinstance(fold, int) or fold < 0):
                raise DatasetError(f"case {case}: fold must be a non-negative integer", meta_path)

    @property
    def phases(self) -> list[str]:
        """Phase names in channel order; the first is the primary phase (PV by default, any name allowed)."""
        ch = self.meta["channel_names"]
        return [ch[str(i)] for i in range(len(ch))]

    @property
    def case_table(self) -> dict[str, dict[str, Any]]:
        return dict(self.meta.get("cases") or {})

    def tumor_type(self, case: str) -> str | None:
        return self.case_table.get(case, {}).get("tumor_type")

    def fold(self, case: str) -> int | None:
        return self.case_table.get(case, {}).get("fold")

    def folds(self) -> dict[int, list[str]]:
        """Fold number -> cases (training cases only), as stored in dataset.json."""
        out: dict[int, list[str]] = {}
        for case in self.cases("Tr"):
            f = self.fold(case)
            if f is None:
                raise DatasetError(f"case {case} has no fold; run `mpliver plan {self.root}`", self.root)
            out.setdefault(f, []).append(case)
        return dict(sorted(out.items()))

    # ---- files --------------------------------------------------------------------------------------------
    def image_path(self, case: str, phase: int | str, split: str = "Tr") -> Path:
        idx = self.phases.index(phase) if isinstance(phase, str) else int(phase)
        return self.root / f"images{split}" / f"{case}_{idx:04d}{FILE_ENDING}"

    def label_path(self, case: str) -> Path:
        return self.root / "labelsTr" / f"{case}{FILE_ENDING}"

    def phase_label_path(self, case: str, phase: int | str) -> Path:
        idx = self.phases.index(phase) if isinstance(phase, str) else int(phase)
        return self.root / "labelsTr_phases" / f"{case}_{idx:04d}{FILE_ENDING}"

    def cases(self, split: str = "Tr") -> list[str]:
        """Case identifiers found in images{split}/ (any phase file counts), sorted."""
        folder = self.root / f"images{split}"
        if not folder.is_dir():
            return []
        ids = set()
        for p in folder.glob(f"*{FILE_ENDING}"):
            stem = p.name[: -len(FILE_ENDING)]
            if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
                ids.add(stem[:-5])
        return sorted(ids)

    # ---- validation and loading ---------------------------------------------------------------------------
    def validate(self, split: str = "Tr", check_values: bool = False) -> list[str]:
        """Check that every case has every phase and (for Tr) a label on the PV grid. Returns the cases.

        Reads headers only unless `check_values`, which also reads voxels and checks HU and label values.
        """
        cases = self.cases(split)
        if not cases:
            raise DatasetError(f"no cases in images{split}/", self.root)
        check_case_table(self)
        for case in cases:
            for i, name in enumerate(self.phases):
                p = self.image_path(case, i, split)
                if not p.exists():
                    raise DatasetError(f"case {case} is missing phase {name} (channel {i})", p)
            pv_geom = read_geometry(self.image_path(case, 0, split))
            if split == "Tr":
                lp = self.label_path(case)
                if not lp.exists():
                    raise DatasetError(f"case {case} has no label", lp)
                check_same_grid(pv_geom, read_geometry(lp), lp, what="label")
            if check_values:
                self.load_case(case, split)
        return cases

    def load_case(self, case: str, split: str = "Tr", with_label: bool = True,
                  with_phase_labels: bool = False) -> CaseVolumes:
        """Read every phase (HU-checked), the PV-grid label and optionally the per-phase labels."""
        phases, geoms = {}, {}
        for i, name in enumerate(self.phases):
            p = self.image_path(case, i, split)
            arr, geom = read_nifti(p, dtype=np.float32)
            check_hu(arr, p)
            check_slices(geom, p, f"the {name} phase")
            warn_lost_header(geom, p)  # training and pre-processing read what predict reads, checked alike
            phases[name], geoms[name] = arr, geom
        out = CaseVolumes(case, phases, geoms)
        if with_label and split == "Tr":
            lp = self.label_path(case)
            label, lgeom = read_nifti(lp)
            check_same_grid(next(iter(geoms.values())), lgeom, lp, what="label")
            out.label = check_label_values(label, lp)
            check_label_liver(out.label, lp)
        if with_phase_labels:
            for i, name in enumerate(self.phases[1:], start=1):
                lp = self.phase_label_path(case, i)
                if lp.exists():
                    lab, lgeom = read_nifti(lp)
                    check_same_grid(geoms[name], lgeom, lp, what="phase label", ref_name=f"the {name} phase")
                    out.phase_labels[name] = check_label_values(lab, lp)
        return out


def tumor_type_spelling(name: str) -> tuple[str, str | None]:
    """How a stored tumour type reads: ('known', name) for one of TUMOR_TYPES as written; ('misspelt', the
    canonical type) for another spelling or a near miss of one (case, long form, 'HCCC'); ('other', None)."""
    text = str(name).strip()
    if text in TUMOR_TYPES:
        return "known", text
    spellings = {t.lower(): t for t in TUMOR_TYPES} | _TYPE_ALIASES
    close = difflib.get_close_matches(text.lower(), list(spellings), n=1, cutoff=0.75)
    return ("misspelt", spellings[close[0]]) if close else ("other", None)


def check_case_table(dataset: Dataset, types: bool = True) -> None:
    """The checks of dataset.json's `cases` table that every command shares (plan, preprocess, train,
    convert, inspect), so each gets the same answer: a misspelt tumour type is an error; a type outside the
    table (docs/method.md §2 allows others) and a listed case without image files are one-line warnings."""
    meta_path = dataset.root / "dataset.json"
    table = dataset.case_table
    present = set(dataset.cases("Tr")) | set(dataset.cases("Ts"))
    orphans = sorted(set(table) - present)
    # warnings are raised here, not at the caller, so that a command that checks twice prints them once
    if orphans:
        more = ", ..." if len(orphans) > 5 else ""
        warnings.warn(InputWarning(f"{meta_path}: {len(orphans)} case(s) of the case table have no image "
                                   f"files ({', '.join(orphans[:5])}{more}); ignored"), stacklevel=1)
    if not types:
        return
    misspelt, other = [], {}
    for case, info in sorted(table.items()):
        ttype = info.get("tumor_type") if isinstance(info, Mapping) else None
        if not ttype:
            continue
        kind, canonical = tumor_type_spelling(ttype)
        if kind == "misspelt":
            misspelt.append((case, ttype, canonical))
        elif kind == "other":
            other[ttype] = other.get(ttype, 0) + 1
    if misspelt:
        case, ttype, canonical = misspelt[0]
        more = f" ({len(misspelt) - 1} more case(s) alike)" if len(misspelt) > 1 else ""
        raise DatasetError(f"case {case}: tumour type '{ttype}' is not in the table "
                           f"({', '.join(TUMOR_TYPES)}), misspelt '{canonical}'{more}: correct dataset.json "
                           f"or run `mpliver plan {dataset.root} --types CSV`", meta_path)
    if other:
        listed = ", ".join(f"'{t}' ({n} case(s))" for t, n in sorted(other.items()))
        warnings.warn(InputWarning(f"{meta_path}: tumour type(s) outside the table "
                                   f"({', '.join(TUMOR_TYPES)}): {listed}; each is reported as its own type"),
                      stacklevel=1)


def check_labels(dataset: Dataset, cases: Iterable[str]) -> None:
    """Read the PV-grid label of each training case and refuse bad values or a tumour without liver."""
    for case in cases:
        path = dataset.label_path(case)
        if not path.exists():
            raise DatasetError(f"case {case} has no label", path)
        label, _ = read_nifti(path)
        check_label_liver(check_label_values(label, path), path)


def check_label_values(label: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Return the label as uint8, refusing values other than 0, 1, 2."""
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
            raise DatasetError("label map holds non-integer values", path)
    vals = np.unique(label)
    bad = [v for v in vals.tolist() if v not in LABELS.values()]
    if bad:
        raise DatasetError(f"label values must be 0/1/2, found {bad[:5]}", path)
    return label.astype(np.uint8, copy=False)


def write_dataset_json(
    root: str | Path,
    phases: list[str],
    num_training: int,
    cases: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `dataset.json` atomically. `phases` in channel order, the primary phase (usually PV) first."""
    if not phases or len(set(phases)) != len(phases):
        raise ValueError(f"phases must be distinct names, the primary first, got {phases}")
    meta: dict[str, Any] = {
        "channel_names": {str(i): p for i, p in enumerate(phases)},
        "labels": dict(LABELS),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
    }
    if extra:
        meta.update(extra)
    if cases is not None:
        meta["cases"] = {k: dict(v) for k, v in cases.items()}
    path = Path(root) / "dataset.json"
    write_json_atomic(path, meta)
    return path
