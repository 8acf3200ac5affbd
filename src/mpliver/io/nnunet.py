"""Export a case-layout dataset as an nnU-Net v2 raw dataset (`DatasetXXX_Name/`).

nnU-Net wants every channel of a case on one grid, so each non-PV phase is resampled onto the PV grid
(linear, through world coordinates; outside ART's field of view becomes air, -1024 HU). This alone does not
correct inter-phase motion; `align` (e.g. `mpliver.data.registration.liver_aligner()`, what
`convert --register` passes) replaces that resampling by mpliver's registration, and the transform of each
case is written to `mpliver_registration.json`. All channels are named "CT" so that nnU-Net uses
its CT normalisation; the phase names are kept under "mpliver_phases". The case folds, when planned, are
written as `splits_final.json` (copy it into `nnUNet_preprocessed/DatasetXXX_Name/` to reuse the split).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpliver.errors import DatasetError
from mpliver.io.atomic import staged_folder, write_json_atomic
from mpliver.io.convert import compact_hu
from mpliver.io.labels import LABELS
from mpliver.io.layout import FILE_ENDING, CaseVolumes, Dataset
from mpliver.io.nifti import write_nifti
from mpliver.io.resample import resample_to_grid

AIR_HU = -1024.0
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
REGISTRATION_JSON = "mpliver_registration.json"

# (case volumes, phase name, that phase's file) -> (the phase on the PV grid, a JSON-able transform record)
PhaseAligner = Callable[[CaseVolumes, str, Path], tuple[np.ndarray, dict]]


def nnunet_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name `DatasetXXX_Name` (id 1-999, three digits)."""
    if not 1 <= int(dataset_id) <= 999:
        raise DatasetError(f"nnU-Net dataset id must be 1-999, got {dataset_id}")
    if not _NAME.match(name):
        raise DatasetError(f"nnU-Net dataset name '{name}' may hold only letters, digits, '_' and '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def export_nnunet(
    dataset: str | Path,
    out_dir: str | Path,
    *,
    dataset_id: int = 501,
    name: str = "MPLiver",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    align: PhaseAligner | None = None,
    align_name: str = "registered",
) -> Path:
    """Write `out_dir/DatasetXXX_Name/` (imagesTr, labelsTr, imagesTs if any, dataset.json). Returns its path.

    The dataset is validated first (every phase present, labels on the PV grid, HU values). The export is
    built in a staging folder and renamed into place at the end; an existing target is refused unless
    `overwrite`, as is another folder in `out_dir` with the same dataset id. `align` puts each non-PV
    phase on the PV grid instead of the header-only resampling (`align_name` says how, in dataset.json).
    """
    src = Dataset(dataset)
    train = src.validate("Tr")
    test = src.cases("Ts")
    if test:
        src.validate("Ts")
    out_dir = Path(out_dir)
    target = out_dir / nnunet_folder_name(dataset_id, name)
    if target.exists() and not overwrite:
        raise DatasetError("nnU-Net dataset already exists; pass --overwrite to replace it", target)
    if out_dir.is_dir():
        same_id = [p.name for p in out_dir.glob(f"Dataset{int(dataset_id):03d}_*") if p.name != target.name]
        if same_id:
            raise DatasetError(f"dataset id {dataset_id} is already used by {same_id[0]}; choose another "
                               "--dataset-id", out_dir)
    transforms: dict[str, dict] = {}
    with staged_folder(target) as stage:
        for split, cases in (("Tr", train), ("Ts", test)):
            for case in cases:
                transforms[case] = _export_case(src, case, split, stage, align)
                if progress is not None:
                    progress(case)
        phases = src.phases
        how = "no motion correction" if align is None else align_name
        meta = {
            "channel_names": {str(i): "CT" for i in range(len(phases))},
            "labels": dict(LABELS),
            "numTraining": len(train),
            "file_ending": FILE_ENDING,
            "name": name,
            "description": f"exported by mpliver from {src.root.resolve()}; non-PV phases resampled onto the "
                           f"PV grid ({how})",
            "mpliver_phases": {str(i): p for i, p in enumerate(phases)},
        }
        if src.case_table:
            meta["mpliver_cases"] = {c: src.case_table[c] for c in train + test if c in src.case_table}
        write_json_atomic(stage / "dataset.json", meta)
        if align is not None:
            write_json_atomic(stage / REGISTRATION_JSON, {"method": align_name, "cases": transforms})
        folds = {c: src.fold(c) for c in train}
        if train and all(f is not None for f in folds.values()):
            splits = [{"train": sorted(c for c in train if folds[c] != f), "val": sorted(c for c in train
                                                                                        if folds[c] == f)}
                      for f in sorted(set(folds.values()))]
            write_json_atomic(stage / "splits_final.json", splits)
    return target


def _export_case(src: Dataset, case: str, split: str, stage: Path, align: PhaseAligner | None) -> dict:
    """Write one case's channels (and label); returns the alignment record of each non-PV phase."""
    vols = src.load_case(case, split, with_label=(split == "Tr"))
    pv_geom = vols.geometries[src.phases[0]]  # the reference phase (PV) comes first
    records = {}
    for i, phase in enumerate(src.phases):
        array, geom = vols.phases[phase], vols.geometries[phase]
        if align is not None and i > 0:
            array, records[phase] = align(vols, phase, src.image_path(case, phase, split))
        elif not geom.same_grid(pv_geom):
            array = resample_to_grid(array, geom, pv_geom, "linear", fill=AIR_HU)
        write_nifti(stage / f"images{split}" / f"{case}_{i:04d}{FILE_ENDING}", compact_hu(array), pv_geom)
    if split == "Tr":
        write_nifti(stage / "labelsTr" / f"{case}{FILE_ENDING}", vols.label.astype(np.uint8), pv_geom)
    return records

