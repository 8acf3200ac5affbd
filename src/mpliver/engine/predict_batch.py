"""`predict --input DATASET_DIR`: every case of imagesTs/ (or imagesTr/ when there is no test split, or the
split asked for), optionally only the cases that match a filter (names or shell patterns).

Cases whose outputs all exist are skipped, so a batch can be rerun after an interruption; `overwrite`
predicts them again. A skipped case whose report names other models than the ones given gets a warning.
One bad case is reported in one line and the rest go on; the summary lists what failed. Under `torchrun`
each rank takes cases rank, rank + world size, ... (from RANK / WORLD_SIZE; LOCAL_RANK picks the GPU) and
writes its own cases into the same output folder: there is no other change and no communication between
ranks.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpliver.engine.bundle import Bundle
from mpliver.engine.distributed import resolve_device
from mpliver.engine.ensemble import liver_bundle, load_ensemble
from mpliver.engine.predict import STAGES, model_names, output_paths, predict, write_outputs
from mpliver.errors import InputError, MpliverError, OutputError
from mpliver.io.layout import Dataset


@dataclass
class BatchSummary:
    """What a batch did: cases predicted, skipped (already done) and failed (case -> one-line reason)."""

    split: str
    rank: int = 0
    world_size: int = 1
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)  # case -> one line (an implausible liver mask)
    other_model: dict[str, str] = field(default_factory=dict)  # skipped, made by another model
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over done cases
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def rank_and_world() -> tuple[int, int, int | None]:
    """(rank, world size, local rank or None) from torchrun's environment; (0, 1, None) otherwise."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = os.environ.get("LOCAL_RANK")
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"invalid torchrun environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, None if local is None else int(local)


def _made_by_other_models(report: Path, bundles: Sequence[Bundle]) -> str | None:
    """The models named in an existing lesion report when they are not `bundles` (None when they are, or
    when the report does not say)."""
    try:
        made_by = json.loads(report.read_text()).get("models")
    except (OSError, ValueError):
        return None
    if not isinstance(made_by, list) or made_by == model_names(bundles):
        return None
    return ", ".join(str(m) for m in made_by) or "no recorded model"


def dataset_cases(dataset_dir: str | Path, split: str | None = None,
                  only: Sequence[str] | None = None) -> tuple[Dataset, str, list[str]]:
    """(dataset, split, cases): the cases of `split` ('Tr' or 'Ts'; None = imagesTs/ when it holds cases,
    else imagesTr/), restricted to those matching a name or shell pattern of `only` when given. A pattern
    that matches no case is refused (a typo would otherwise run nothing, or everything else, silently)."""
    ds = Dataset(dataset_dir)
    if split is not None and split.rstrip("/") in ("imagesTr", "imagesTs"):
        split = split.rstrip("/")[len("images"):]
    if split is not None and split not in ("Tr", "Ts"):
        raise InputError(f"split must be Tr or Ts (imagesTr/ or imagesTs/), got '{split}'")
    for name in ((split,) if split else ("Ts", "Tr")):
        cases = ds.cases(name)
        if cases:
            break
    else:
        where = f"images{split}/" if split else "imagesTs/ or imagesTr/"
        raise InputError(f"no cases in {where}", Path(dataset_dir))
    if only:
        for pattern in only:
            if not fnmatch.filter(cases, pattern):
                raise InputError(f"no case of images{name}/ matches '{pattern}' ({len(cases)} cases, e.g. "
                                 f"{', '.join(cases[:3])})", Path(dataset_dir))
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c, p) for p in only)]
    return ds, name, cases


def predict_dataset(
    bundle: Bundle | Sequence[Bundle],
    dataset_dir: str | Path,
    out_dir: str | Path,
    *,
    liver_mask_dir: str | Path | None = None,
    liver_mask_values: tuple[int, ...] | None = None,
    device: str = "auto",
    tta: bool = False,
    batch_size: int = 16,
    registration: str | None = None,
    on_case: Callable[[str, str], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_plan: Callable[[list[str]], None] | None = None,
    split: str | None = None,
    cases: Sequence[str] | None = None,
    overwrite: bool = False,
    strict: bool = False,
    probabilities: bool = False,
    on_warning: Callable[[str, str], None] | None = None,
) -> BatchSummary:
    """Predict every case of this rank's share of `dataset_dir` into `out_dir` (see the module notes).

    `bundle` may be several (a fold ensemble). `split` and `cases` choose the cases (see `dataset_cases`);
    `overwrite` redoes finished cases; `strict` fails a case with an implausible liver mask;
    `probabilities` also writes CASE_probability.nii.gz. `on_plan(cases)` receives this rank's cases;
    `on_case(case, status)` is called with status 'start', 'done', 'skipped' or 'failed: reason';
    `on_stage(name)` at each stage of a study; `on_warning(case, line)` for an implausible liver mask.
    """
    start = time.perf_counter()
    bundles = load_ensemble(bundle)
    bundle = bundles[0]
    ds, split, cases = dataset_cases(dataset_dir, split, cases)
    missing = [p for p in bundle.phases if p not in ds.phases]
    if missing:
        raise InputError(f"the model takes phases {', '.join(bundle.phases)} but the dataset has "
                         f"{', '.join(ds.phases)} (no {missing[0]})", ds.root / "dataset.json")
    if liver_mask_dir is None and liver_bundle(bundles) is None:
        raise InputError("the bundle has no liver model: give a folder of liver masks CASE.nii.gz "
                         "(--liver-mask DIR)", bundle.path)
    rank, world, local = rank_and_world()
    dev = resolve_device(device, local)
    mine = cases[rank::world]
    if on_plan is not None:
        on_plan(mine)
    summary = BatchSummary(split, rank, world)
    for case in mine:
        paths = output_paths(out_dir, case, probabilities=probabilities)
        if not overwrite and all(p.exists() for p in paths.values()):
            summary.skipped.append(case)
            other = _made_by_other_models(paths["lesions_json"], bundles)
            if other is not None:
                line = (f"case {case}: skipped, but its outputs were made by {other}, not by the model(s) "
                        "given now (--overwrite to predict it again)")
                summary.other_model[case] = line
                if on_warning is not None:
                    on_warning(case, line)
            if on_case is not None:
                on_case(case, "skipped")
            continue
        if on_case is not None:
            on_case(case, "start")
        try:
            phases = {name: ds.image_path(case, name, split) for name in bundle.phases}
            mask = None if liver_mask_dir is None else Path(liver_mask_dir) / f"{case}.nii.gz"
            result = predict(bundles, phases, liver_mask=mask, liver_mask_values=liver_mask_values,
                             case_id=case, device=dev, tta=tta, batch_size=batch_size,
                             registration=registration, on_stage=on_stage, strict=strict)
            if result.liver_check is not None and not result.liver_check.ok:
                summary.warnings[case] = result.liver_check.message(case, result.liver_origin)
                if on_warning is not None:
                    on_warning(case, summary.warnings[case])
            write_outputs(result, out_dir, meta={"model": bundle.model_config.name},
                          probabilities=probabilities)
        except OutputError:  # a full or read-only disk fails every case alike: stop with one line
            raise
        except MpliverError as exc:
            summary.failed[case] = str(exc)
        except Exception as exc:  # one broken case must not stop the batch; it is reported, not hidden
            summary.failed[case] = f"case {case}: unexpected {type(exc).__name__}: {exc}".splitlines()[0]
        else:
            summary.done.append(case)
            for name in (*STAGES, "writing"):
                summary.timings[name] = summary.timings.get(name, 0.0) + result.timings.get(name, 0.0)
        if on_case is not None:
            on_case(case, "done" if case in summary.done else f"failed: {summary.failed[case]}")
    summary.seconds = time.perf_counter() - start
    return summary
