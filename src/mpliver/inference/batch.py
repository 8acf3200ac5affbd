"""`predict --input DATASET_DIR`: every case of imagesTs/ (or imagesTr/ when there is no test split, or the
split asked for), optionally only the cases that match a filter (names or shell patterns).

Cases whose outputs all exist are skipped, so a batch can be rerun after an interruption; `overwrite`
predicts them again. A skipped case whose report names other models than the ones given gets a warning.
One bad case is reported in one line and the rest go on; the summary lists what failed. Under `torchrun`
each rank takes cases rank, rank + world size, ... (from RANK / WORLD_SIZE; LOCAL_RANK picks the GPU) and
writes its own cases into the same output folder: there is no other change and no communication between
ranks. `workers` >= 2 pipelines this rank's cases (`inference.pipeline`): the same outputs, with the CPU
stages of the next studies in other processes while this one runs the network.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpliver.errors import ConfigError, InputError, OutputError
from mpliver.inference.bundle import Bundle
from mpliver.inference.ensemble import liver_bundle, load_ensemble
from mpliver.inference.pipeline import PipelineCallbacks, failure_line, predict_pipelined
from mpliver.inference.predict import (
    STAGES,
    PredictionResult,
    check_precision,
    model_names,
    output_paths,
    predict,
    predict_settings,
    write_outputs,
)
from mpliver.io.layout import Dataset
from mpliver.runtime import resolve_device


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
    workers: int = 1,
    max_in_flight: int | None = None,
    precision: str = "auto",
) -> BatchSummary:
    """Predict every case of this rank's share of `dataset_dir` into `out_dir` (see the module notes).

    `bundle` may be several (a fold ensemble). `split` and `cases` choose the cases (see `dataset_cases`);
    `overwrite` redoes finished cases; `strict` fails a case with an implausible liver mask;
    `probabilities` also writes CASE_probability.nii.gz. `on_plan(cases)` receives this rank's cases;
    `on_case(case, status)` is called with status 'start', 'done', 'skipped' or 'failed: reason';
    `on_stage(name)` at each stage of a study; `on_warning(case, line)` for an implausible liver mask.
    `workers` >= 2 runs the pipeline of `inference.pipeline` (that many processes on this rank, this one
    holding the model; at most `max_in_flight` studies at once, default workers + 1) with the same outputs;
    1 runs every stage here, one study after another. `precision` of the network: see `predict`.
    """
    start = time.perf_counter()
    check_precision(precision)
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
    if workers < 1 or (max_in_flight is not None and max_in_flight < 1):
        raise ConfigError(f"--workers and --max-in-flight must be at least 1, got {workers} and "
                          f"{max_in_flight}")
    rank, world, local = rank_and_world()
    dev = resolve_device(device, local)
    mine = cases[rank::world]
    if on_plan is not None:
        on_plan(mine)
    summary = BatchSummary(split, rank, world)

    def skip(case: str) -> bool:
        paths = output_paths(out_dir, case, probabilities=probabilities)
        if overwrite or not all(p.exists() for p in paths.values()):
            return False
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
        return True

    def phases_of(case: str) -> dict[str, Path]:
        return {name: ds.image_path(case, name, split) for name in bundle.phases}

    def mask_of(case: str) -> Path | None:
        return None if liver_mask_dir is None else Path(liver_mask_dir) / f"{case}.nii.gz"

    def write(result: PredictionResult) -> None:
        write_outputs(result, out_dir, meta={"model": bundle.model_config.name}, probabilities=probabilities)

    def warn_liver(case: str, result: PredictionResult) -> None:
        if result.liver_check is not None and not result.liver_check.ok:
            summary.warnings[case] = result.liver_check.message(case, result.liver_origin)
            if on_warning is not None:
                on_warning(case, summary.warnings[case])

    def done(case: str, result: PredictionResult) -> None:
        summary.done.append(case)
        for name in (*STAGES, "writing"):
            summary.timings[name] = summary.timings.get(name, 0.0) + result.timings.get(name, 0.0)
        if on_case is not None:
            on_case(case, "done")

    def failed(case: str, line: str) -> None:
        summary.failed[case] = line
        if on_case is not None:
            on_case(case, f"failed: {line}")

    def written(case: str, result: PredictionResult) -> None:
        warn_liver(case, result)
        done(case, result)

    if workers > 1:
        settings = predict_settings(bundles, registration, strict)
        callbacks = PipelineCallbacks(skip, write, written, failed,
                                      start=None if on_case is None else lambda c: on_case(c, "start"),
                                      stage=on_stage)
        predict_pipelined(bundles, settings, mine, phases_of, callbacks,
                          liver_mask_of=None if liver_mask_dir is None else mask_of,
                          liver_mask_values=liver_mask_values, device=dev, tta=tta, batch_size=batch_size,
                          workers=workers, max_in_flight=max_in_flight, precision=precision)
        summary.seconds = time.perf_counter() - start
        return summary
    for case in mine:
        if skip(case):
            continue
        if on_case is not None:
            on_case(case, "start")
        try:
            result = predict(bundles, phases_of(case), liver_mask=mask_of(case),
                             liver_mask_values=liver_mask_values, case_id=case, device=dev, tta=tta,
                             batch_size=batch_size, registration=registration, on_stage=on_stage,
                             strict=strict, precision=precision)
            write(result)
        except OutputError:  # a full or read-only disk fails every case alike: stop with one line
            raise
        except Exception as exc:  # one broken case must not stop the batch; it is reported, not hidden
            failed(case, failure_line(case, exc))
        else:
            written(case, result)  # as the pipeline: the liver warning of a case whose outputs were written
    summary.seconds = time.perf_counter() - start
    return summary
