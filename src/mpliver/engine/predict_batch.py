"""`predict --input DATASET_DIR`: every case of imagesTs/ (or imagesTr/ when there is no test split).

Cases whose outputs all exist are skipped, so a batch can be rerun after an interruption. One bad case is
reported in one line and the rest go on; the summary lists what failed. Under `torchrun` each rank takes
cases rank, rank + world size, ... (from RANK / WORLD_SIZE; LOCAL_RANK picks the GPU) and writes its own
cases into the same output folder: there is no other change and no communication between ranks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpliver.engine.bundle import Bundle
from mpliver.engine.distributed import resolve_device
from mpliver.engine.predict import STAGES, output_paths, predict, write_outputs
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


def dataset_cases(dataset_dir: str | Path) -> tuple[Dataset, str, list[str]]:
    """(dataset, split, cases): imagesTs/ when it holds cases, else imagesTr/."""
    ds = Dataset(dataset_dir)
    for split in ("Ts", "Tr"):
        cases = ds.cases(split)
        if cases:
            return ds, split, cases
    raise InputError("no cases in imagesTs/ or imagesTr/", Path(dataset_dir))


def predict_dataset(
    bundle: Bundle,
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
) -> BatchSummary:
    """Predict every case of this rank's share of `dataset_dir` into `out_dir` (see the module notes).

    `on_plan(cases)` receives this rank's cases; `on_case(case, status)` is called with status 'start',
    'done', 'skipped' or 'failed: reason'; `on_stage(name)` at each stage of a study.
    """
    start = time.perf_counter()
    ds, split, cases = dataset_cases(dataset_dir)
    missing = [p for p in bundle.phases if p not in ds.phases]
    if missing:
        raise InputError(f"the model takes phases {', '.join(bundle.phases)} but the dataset has "
                         f"{', '.join(ds.phases)} (no {missing[0]})", ds.root / "dataset.json")
    if liver_mask_dir is None and bundle.liver is None:
        raise InputError("the bundle has no liver model: give a folder of liver masks CASE.nii.gz "
                         "(--liver-mask DIR)", bundle.path)
    rank, world, local = rank_and_world()
    dev = resolve_device(device, local)
    mine = cases[rank::world]
    if on_plan is not None:
        on_plan(mine)
    summary = BatchSummary(split, rank, world)
    for case in mine:
        if all(p.exists() for p in output_paths(out_dir, case).values()):
            summary.skipped.append(case)
            if on_case is not None:
                on_case(case, "skipped")
            continue
        if on_case is not None:
            on_case(case, "start")
        try:
            phases = {name: ds.image_path(case, name, split) for name in bundle.phases}
            mask = None if liver_mask_dir is None else Path(liver_mask_dir) / f"{case}.nii.gz"
            result = predict(bundle, phases, liver_mask=mask, liver_mask_values=liver_mask_values,
                             case_id=case, device=dev, tta=tta, batch_size=batch_size,
                             registration=registration, on_stage=on_stage)
            write_outputs(result, out_dir, meta={"model": bundle.model_config.name})
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
