"""`predict --input DATASET_DIR`: every case of imagesTs/ (or imagesTr/ when there is no test split, or the
split asked for), optionally only the cases that match a filter (names or shell patterns).

Cases whose outputs all exist are skipped, so a batch can be rerun after an interruption; `overwrite`
predicts them again. A skipped case whose report names other models than the ones given gets a warning.
One bad case is reported in one line and the rest go on; the summary lists what failed. Under `torchrun`
each rank takes cases rank, rank + world size, ... (from RANK / WORLD_SIZE; LOCAL_RANK picks the GPU) and
writes its own cases into the same output folder: there is no other change and no communication between
ranks. One `Predictor` serves every case of the rank. `workers` >= 2 pipelines this rank's cases
(`inference.pipeline`): the same outputs, with the CPU stages of the next studies in other processes while
this one runs the network.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpliver.errors import ConfigError, InputError, OutputError
from mpliver.inference.bundle import Bundle
from mpliver.inference.clock import STAGES
from mpliver.inference.ensemble import liver_bundle, load_ensemble, model_names
from mpliver.inference.outputs import PredictionResult, output_paths
from mpliver.inference.pipeline import PipelineCallbacks, failure_line, predict_pipelined
from mpliver.inference.postprocess import Postprocess
from mpliver.inference.predict import Predictor
from mpliver.inference.settings import check_precision, predict_settings
from mpliver.io.layout import Dataset
from mpliver.runtime import env_dist_info, resolve_device


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


def _check_batch(bundles: Sequence[Bundle], ds: Dataset, liver_mask_dir: str | Path | None, workers: int,
                 max_in_flight: int | None) -> None:
    """Refuse, before any case, a dataset without the model's phases, a batch without any liver mask, and
    worker counts below 1."""
    bundle = bundles[0]
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


@dataclass
class _BatchRun:
    """One rank's batch: where its cases come from and go, what it reports (`summary`) and to whom (the
    `on_*` callbacks of `predict_dataset`). Its methods are the pipeline's callbacks too."""

    predictor: Predictor
    ds: Dataset
    out_dir: Path
    summary: BatchSummary
    liver_mask_dir: str | Path | None = None
    overwrite: bool = False
    probabilities: bool = False
    on_case: Callable[[str, str], None] | None = None
    on_warning: Callable[[str, str], None] | None = None

    def tell(self, case: str, status: str) -> None:
        if self.on_case is not None:
            self.on_case(case, status)

    def skip(self, case: str) -> bool:
        """Whether the outputs of `case` all exist (and it is skipped, with a warning when its report names
        other models), unless `overwrite`."""
        paths = output_paths(self.out_dir, case, probabilities=self.probabilities)
        if self.overwrite or not all(p.exists() for p in paths.values()):
            return False
        self.summary.skipped.append(case)
        other = _made_by_other_models(paths["lesions_json"], self.predictor.bundles)
        if other is not None:
            line = (f"case {case}: skipped, but its outputs were made by {other}, not by the model(s) "
                    "given now (--overwrite to predict it again)")
            self.summary.other_model[case] = line
            if self.on_warning is not None:
                self.on_warning(case, line)
        self.tell(case, "skipped")
        return True

    def phases_of(self, case: str) -> dict[str, Path]:
        split = self.summary.split
        return {name: self.ds.image_path(case, name, split) for name in self.predictor.settings.phases}

    def mask_of(self, case: str) -> Path | None:
        return None if self.liver_mask_dir is None else Path(self.liver_mask_dir) / f"{case}.nii.gz"

    def write(self, result: PredictionResult) -> None:
        self.predictor.write_outputs(result, self.out_dir, probabilities=self.probabilities)

    def failed(self, case: str, line: str) -> None:
        self.summary.failed[case] = line
        self.tell(case, f"failed: {line}")

    def written(self, case: str, result: PredictionResult) -> None:
        """A case whose outputs were written: its liver warning (if any), its timings, 'done'."""
        summary = self.summary
        if result.liver_check is not None and not result.liver_check.ok:
            summary.warnings[case] = result.liver_check.message(case, result.liver_origin)
            if self.on_warning is not None:
                self.on_warning(case, summary.warnings[case])
        summary.done.append(case)
        for name in (*STAGES, "writing"):
            summary.timings[name] = summary.timings.get(name, 0.0) + result.timings.get(name, 0.0)
        self.tell(case, "done")

    def run_sequential(self, cases: Sequence[str], liver_mask_values: tuple[int, ...] | None,
                       on_stage: Callable[[str], None] | None) -> None:
        """Every stage here, one case after another."""
        for case in cases:
            if self.skip(case):
                continue
            self.tell(case, "start")
            try:
                result = self.predictor.predict(self.phases_of(case), liver_mask=self.mask_of(case),
                                                liver_mask_values=liver_mask_values, case_id=case,
                                                on_stage=on_stage)
                self.write(result)
            except OutputError:  # a full or read-only disk fails every case alike: stop with one line
                raise
            except Exception as exc:  # one broken case must not stop the batch; it is reported, not hidden
                self.failed(case, failure_line(case, exc))
            else:
                self.written(case, result)  # a liver warning once written, as the pipeline

    def run_pipelined(self, cases: Sequence[str], liver_mask_values: tuple[int, ...] | None,
                      on_stage: Callable[[str], None] | None, workers: int,
                      max_in_flight: int | None) -> None:
        """The pipeline of `inference.pipeline`, with this run's methods as its callbacks."""
        start = None if self.on_case is None else (lambda c: self.tell(c, "start"))
        callbacks = PipelineCallbacks(self.skip, self.write, self.written, self.failed, start=start,
                                      stage=on_stage)
        predict_pipelined(self.predictor, cases, self.phases_of, callbacks,
                          liver_mask_of=None if self.liver_mask_dir is None else self.mask_of,
                          liver_mask_values=liver_mask_values, workers=workers, max_in_flight=max_in_flight)


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
    postprocess: Postprocess | None = None,
) -> BatchSummary:
    """Predict every case of this rank's share of `dataset_dir` into `out_dir` (see the module notes).

    `bundle` may be several (a fold ensemble). `split` and `cases` choose the cases (see `dataset_cases`);
    `overwrite` redoes finished cases; `strict` fails a case with an implausible liver mask;
    `probabilities` also writes CASE_probability.nii.gz. `on_plan(cases)` receives this rank's cases;
    `on_case(case, status)` is called with status 'start', 'done', 'skipped' or 'failed: reason';
    `on_stage(name)` at each stage of a study; `on_warning(case, line)` for an implausible liver mask.
    `workers` >= 2 runs the pipeline of `inference.pipeline` (that many processes on this rank, this one
    holding the model; at most `max_in_flight` studies at once, default workers + 1) with the same outputs;
    1 runs every stage here, one study after another. `precision` of the network and `postprocess` (how
    the probability becomes the tumour mask): see `predict`.
    """
    start = time.perf_counter()
    check_precision(precision)
    bundles = load_ensemble(bundle)
    ds, split, cases = dataset_cases(dataset_dir, split, cases)
    _check_batch(bundles, ds, liver_mask_dir, workers, max_in_flight)
    dist = env_dist_info()  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one process when unset
    predictor = Predictor(predict_settings(bundles, registration, strict, postprocess), bundles,
                          resolve_device(device, dist.local_rank), tta=tta,
                          batch_size=batch_size, precision=precision)
    rank, world = dist.rank, dist.world_size
    mine = cases[rank::world]
    if on_plan is not None:
        on_plan(mine)
    run = _BatchRun(predictor, ds, Path(out_dir), BatchSummary(split, rank, world), liver_mask_dir, overwrite,
                    probabilities, on_case, on_warning)
    if workers > 1:
        run.run_pipelined(mine, liver_mask_values, on_stage, workers, max_in_flight)
    else:
        run.run_sequential(mine, liver_mask_values, on_stage)
    run.summary.seconds = time.perf_counter() - start
    return run.summary
