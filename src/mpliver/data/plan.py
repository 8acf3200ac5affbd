"""Assign tumour types and type-stratified folds to a dataset, once, in its dataset.json (docs/method.md §2).

Types come from a CSV `case,tumor_type` or from the types already in dataset.json. Folds cover the labelled
(imagesTr) cases. The file is rewritten atomically and keeps every other key and per-case entry.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mpliver.data.folds import stratified_folds
from mpliver.errors import DatasetError, InputError
from mpliver.io.atomic import write_json_atomic
from mpliver.io.layout import Dataset, check_case_table, check_labels, normalize_tumor_type


def read_types_csv(path: str | Path, allow_other_types: bool = False) -> dict[str, str]:
    """Read `case,tumor_type` rows (header required) into case -> canonical tumour type."""
    path = Path(path)
    if not path.is_file():
        raise InputError("tumour type CSV not found", path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
            if "case" not in fields or "tumor_type" not in fields:
                raise InputError(f"expected columns case,tumor_type, found {list(fields)}", path)
            out: dict[str, str] = {}
            for n, row in enumerate(reader, start=2):
                case = (row.get(fields["case"]) or "").strip()
                ttype = (row.get(fields["tumor_type"]) or "").strip()
                if not case:
                    raise InputError(f"line {n}: empty case id", path)
                if not ttype:
                    raise InputError(f"line {n}: case {case} has no tumour type", path)
                if case in out:
                    raise InputError(f"line {n}: case {case} listed twice", path)
                out[case] = normalize_tumor_type(ttype, allow_other_types, path)
    except UnicodeDecodeError:
        raise InputError("not a text CSV file", path) from None
    if not out:
        raise InputError("no cases in the CSV", path)
    return out


def plan_dataset(
    root: str | Path,
    types_csv: str | Path | None = None,
    num_folds: int = 5,
    seed: int = 0,
    allow_other_types: bool = False,
) -> dict[str, dict[str, Any]]:
    """Write tumour types and stratified folds into `root/dataset.json`; returns the updated cases table.

    With `types_csv`, every training case must be in it and every CSV case in the dataset (test cases in
    imagesTs may be typed too; they get no fold). Without it, the types already stored are used (cases
    without a type form their own stratum). The case table and the labels get the checks every command
    shares (`check_case_table`, `check_labels`).
    """
    ds = Dataset(root)
    meta_path = ds.root / "dataset.json"
    cases = ds.cases("Tr")
    if not cases:
        raise DatasetError("no training cases in imagesTr/", ds.root)
    if num_folds < 2:
        raise DatasetError(f"need at least 2 folds, got {num_folds}", meta_path)
    if num_folds > len(cases):
        raise DatasetError(f"{num_folds} folds for only {len(cases)} training cases", meta_path)
    check_case_table(ds, types=types_csv is None)  # types from a CSV replace the stored ones
    check_labels(ds, cases)
    if types_csv is not None:
        types = read_types_csv(types_csv, allow_other_types)
        extra = sorted(set(types) - set(cases) - set(ds.cases("Ts")))
        if extra:
            raise InputError(f"{len(extra)} case(s) not in the dataset: {extra[:5]}", types_csv)
        missing = sorted(set(cases) - set(types))
        if missing:
            raise InputError(f"{len(missing)} training case(s) of {ds.root} have no tumour type: "
                             f"{missing[:5]}", types_csv)
    else:
        types = {}
        for c in cases:
            t = ds.tumor_type(c)
            if t is not None:
                types[c] = normalize_tumor_type(t, True, meta_path)  # other types: warned above
    folds = stratified_folds({c: types.get(c) for c in cases}, num_folds=num_folds, seed=seed)

    meta = json.loads(meta_path.read_text())
    table: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (meta.get("cases") or {}).items()}
    for c in sorted(types):
        table.setdefault(c, {})["tumor_type"] = types[c]
    for c, entry in table.items():
        if c not in folds:
            entry.pop("fold", None)  # only training cases have folds
    for c in cases:
        table.setdefault(c, {})["fold"] = folds[c]
    meta["cases"] = table
    write_json_atomic(meta_path, meta)
    return table


def fold_type_counts(table: dict[str, dict[str, Any]]) -> dict[int, dict[str, int]]:
    """fold -> tumour type -> number of cases, for a summary table."""
    out: dict[int, dict[str, int]] = {}
    for info in table.values():
        if info.get("fold") is None:
            continue
        per = out.setdefault(int(info["fold"]), {})
        t = info.get("tumor_type") or "untyped"
        per[t] = per.get(t, 0) + 1
    return dict(sorted(out.items()))
