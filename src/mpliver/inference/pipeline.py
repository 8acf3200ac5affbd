"""The pipelined batch predictor (`predict --input DIR --workers N`, N >= 2).

This process holds the model(s) and runs the network stage; N - 1 preparation processes (spawned, one torch
thread each) read the studies, check them, register the phases and pre-process them into stacks; one writer
thread post-processes each study and writes its outputs with `write_outputs`. So the CPU stages of the next
studies overlap the network stage of the current one. Every stage is the same function `predict` runs
(`inference.predict`), on the same inputs, so the outputs are the same bytes as the sequential batch's.

Where the liver stage runs: a liver mask given as a file is read and resampled in the preparation process
(it is CPU work). The bundle's liver model runs here, in the model process, on the model's device: it is a
network (on a GPU a preparation process would need its own CUDA context and a copy of the weights, and on the
CPU it would run with other thread settings than the sequential path, which need not give the same bits).
Its study then goes to a preparation process twice: once to be read, once to be registered and pre-processed.

Memory stays bounded: at most `max_in_flight` studies are between "submitted for reading" and "written"
(default N + 1: one per preparation process, one in the network, one being written). Large arrays travel
between processes as shared-memory tensors, not through a pipe. One bad study is reported in one line and
the batch goes on; a preparation process that dies (e.g. killed for memory) fails the oldest study it may
have held and the pool is restarted for the rest. Events (`on_case`, `on_stage`) come from this thread.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing

from mpliver.data.liver_check import LiverCheck
from mpliver.errors import MpliverError, OutputError
from mpliver.inference.bundle import Bundle
from mpliver.inference.predict import (
    PredictionResult,
    PredictSettings,
    PreparedStudy,
    StageClock,
    StudyVolumes,
    finish_study,
    liver_stage,
    model_names,
    network_stage,
    prepare_study,
    read_study,
    register_and_prepare,
)

START_METHOD = "spawn"  # not fork: a forked child of a process with torch threads can deadlock


def failure_line(case: str, exc: BaseException) -> str:
    """The one line a batch reports for a study that failed: the message of an MpliverError, else the
    exception's type and first line."""
    if isinstance(exc, MpliverError):
        return str(exc)
    return f"case {case}: unexpected {type(exc).__name__}: {exc}".splitlines()[0]


@dataclass
class _Outcome:
    """What a preparation task returns: its value, or the failure line; and the warnings it raised."""

    value: Any = None
    error: str | None = None
    warnings: list[tuple[type[Warning], str]] = field(default_factory=list)


def _shared(array: np.ndarray) -> torch.Tensor:
    """A tensor view of `array`: pickled between processes as shared memory, not copied through a pipe."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _ship_study(study: StudyVolumes) -> StudyVolumes:
    return replace(study, volumes={k: _shared(v) for k, v in study.volumes.items()})


def _land_study(study: StudyVolumes) -> StudyVolumes:
    return replace(study, volumes={k: v.numpy() for k, v in study.volumes.items()})


def _ship_prepared(study: PreparedStudy) -> PreparedStudy:
    return replace(study, stacks=_shared(study.stacks), liver=_shared(study.liver))


def _land_prepared(study: PreparedStudy) -> PreparedStudy:
    return replace(study, stacks=study.stacks.numpy(), liver=study.liver.numpy())


def _init_worker() -> None:
    torch.set_num_threads(1)  # N - 1 of these share the cores with the model process


def _run_task(case: str, task: Callable[[], Any]) -> _Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = task()
        except Exception as exc:  # reported as the sequential batch reports it; the batch goes on
            return _Outcome(error=failure_line(case, exc),
                            warnings=[(w.category, str(w.message)) for w in caught])
    return _Outcome(value, None, [(w.category, str(w.message)) for w in caught])


def _prepare_task(settings: PredictSettings, case: str, phases: dict[str, Path], liver_mask: Path,
                  values: tuple[int, ...] | None) -> _Outcome:
    """io, liver (from the given mask), registration and preprocess of one study."""
    return _run_task(case, lambda: _ship_prepared(prepare_study(
        settings, phases, case, liver_mask=liver_mask, liver_mask_values=values)))


def _read_task(settings: PredictSettings, case: str, phases: dict[str, Path]) -> _Outcome:
    """io of one study whose liver mask the model process makes."""
    return _run_task(case, lambda: _ship_study(read_study(settings, phases, case)))


def _register_task(settings: PredictSettings, study: StudyVolumes, liver: torch.Tensor, origin: str,
                   check: LiverCheck) -> _Outcome:
    """registration and preprocess of a study read by `_read_task`, with the liver mask the model process
    made."""
    return _run_task(study.case_id, lambda: _ship_prepared(register_and_prepare(
        settings, _land_study(study), liver.numpy(), origin, check, StageClock(timings=study.timings))))


@dataclass
class _Entry:
    """A study in a preparation process: the task and its arguments (to resubmit after a pool restart)."""

    case: str
    task: Callable[..., _Outcome]
    args: tuple
    future: Future | None = None


@dataclass
class PipelineCallbacks:
    """How the batch hears about studies: `skip(case)` says (and reports) whether a finished study is
    skipped; `write(result)` runs in the writer thread; `done(case, result)` and `failed(case, line)` in
    this thread, after the writing; `start(case)` when the model process takes a study up;
    `stage(name)` at its stages here."""

    skip: Callable[[str], bool]
    write: Callable[[PredictionResult], None]
    done: Callable[[str, PredictionResult], None]
    failed: Callable[[str, str], None]
    start: Callable[[str], None] | None = None
    stage: Callable[[str], None] | None = None


def predict_pipelined(
    bundles: Sequence[Bundle],
    settings: PredictSettings,
    cases: Sequence[str],
    phases_of: Callable[[str], dict[str, Path]],
    callbacks: PipelineCallbacks,
    *,
    liver_mask_of: Callable[[str], Path] | None = None,
    liver_mask_values: tuple[int, ...] | None = None,
    device: torch.device,
    tta: bool = False,
    batch_size: int = 16,
    workers: int = 2,
    max_in_flight: int | None = None,
    precision: str = "auto",
) -> None:
    """Predict `cases` through the pipeline (module notes): `workers` processes in all, this one included;
    `phases_of(case)` gives a study's phase files and `liver_mask_of(case)` its liver mask file (None: the
    bundle's liver model)."""
    if workers < 2:
        raise ValueError(f"the pipeline needs at least 2 workers, got {workers}")
    limit = max_in_flight if max_in_flight is not None else workers + 1
    if limit < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {limit}")
    synthetic, models = any(b.synthetic for b in bundles), model_names(bundles)
    pending = iter(cases)
    reading: deque[_Entry] = deque()   # io in a preparation process (liver from the model)
    preparing: deque[_Entry] = deque()  # prepare (or registration + preprocess) in a preparation process
    writing: deque[tuple[str, Future]] = deque()
    in_flight = 0
    context = torch.multiprocessing.get_context(START_METHOD)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_init_worker)

    pool, writer = new_pool(), ThreadPoolExecutor(1, thread_name_prefix="mpliver-writer")

    def restart_pool() -> None:
        """A new pool after a preparation process died; the tasks the old one had not finished go again, in
        their order."""
        nonlocal pool
        pool.shutdown(wait=False, cancel_futures=True)
        pool = new_pool()
        for queue in (reading, preparing):
            for other in queue:
                done = other.future.done() and not other.future.cancelled()
                if not done or other.future.exception() is not None:
                    other.future = pool.submit(other.task, *other.args)

    def submit(entry: _Entry, queue: deque[_Entry]) -> None:
        try:
            entry.future = pool.submit(entry.task, *entry.args)
        except BrokenProcessPool:  # a process died since the last look
            restart_pool()
            entry.future = pool.submit(entry.task, *entry.args)
        queue.append(entry)

    def fail(case: str, line: str) -> None:
        nonlocal in_flight
        in_flight -= 1
        callbacks.failed(case, line)

    def top_up() -> None:
        nonlocal in_flight
        while in_flight < limit:
            case = next(pending, None)
            if case is None:
                return
            if callbacks.skip(case):
                continue
            try:
                phases = phases_of(case)
                mask = None if liver_mask_of is None else liver_mask_of(case)
            except Exception as exc:
                callbacks.failed(case, failure_line(case, exc))
                continue
            in_flight += 1
            if mask is not None:
                submit(_Entry(case, _prepare_task, (settings, case, phases, mask, liver_mask_values)),
                       preparing)
            else:
                submit(_Entry(case, _read_task, (settings, case, phases)), reading)

    def outcome(entry: _Entry) -> _Outcome | None:
        """The entry's outcome; None (and the study failed) when its task raised or its process died."""
        try:
            result = entry.future.result()
        except BrokenProcessPool:  # the oldest study fails (it may not be the one that killed the process)
            fail(entry.case, f"case {entry.case}: its preparation process died (out of memory?)")
            restart_pool()
            return None
        for category, message in result.warnings:
            warnings.warn(message, category, stacklevel=1)
        if result.error is not None:
            fail(entry.case, result.error)
            return None
        return result

    def model_stage(case: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except Exception as exc:  # e.g. out of GPU memory: this study fails, the batch goes on
            fail(case, failure_line(case, exc))
            return None

    def make_liver(entry: _Entry) -> None:
        result = outcome(entry)
        if result is None:
            return
        study = _land_study(result.value)
        if callbacks.start is not None:
            callbacks.start(entry.case)
        clock = StageClock(callbacks.stage, study.timings)
        made = model_stage(entry.case, lambda: liver_stage(settings, study, bundles=bundles, device=device,
                                                           batch_size=batch_size, clock=clock))
        if made is None:
            return
        clock.stop()
        liver, origin, check = made
        study = replace(result.value, timings=clock.timings)  # the shared volumes go on as they came
        args = (settings, study, _shared(liver), origin, check)
        submit(_Entry(entry.case, _register_task, args), preparing)

    def run_network(entry: _Entry) -> None:
        result = outcome(entry)
        if result is None:
            return
        study = _land_prepared(result.value)
        if callbacks.start is not None and liver_mask_of is not None:
            callbacks.start(entry.case)
        clock = StageClock(callbacks.stage, study.timings)
        clock.mark("network")
        prob = model_stage(entry.case, lambda: network_stage(bundles, study.stacks, batch_size, device, tta,
                                                                       precision))
        if prob is None:
            return
        clock.stop()
        study = replace(study, stacks=None, timings=clock.timings)  # the stacks are not needed any more

        def finish_and_write() -> PredictionResult:
            result = finish_study(study, prob, synthetic, models)
            callbacks.write(result)
            return result

        writing.append((entry.case, writer.submit(finish_and_write)))

    def drain_written(block: bool) -> None:
        nonlocal in_flight
        while writing and (block or writing[0][1].done()):
            case, future = writing.popleft()
            block = False
            try:
                result = future.result()
            except OutputError:  # a full or read-only disk fails every study alike: stop, as sequentially
                raise
            except Exception as exc:
                fail(case, failure_line(case, exc))
                continue
            in_flight -= 1
            callbacks.done(case, result)

    try:
        while True:
            top_up()
            drain_written(block=False)
            if reading and reading[0].future.done():  # the liver stage first: it unblocks a preparation
                make_liver(reading.popleft())
            elif preparing and preparing[0].future.done():
                run_network(preparing.popleft())
            elif reading or preparing:
                heads = [q[0].future for q in (reading, preparing) if q]
                wait(heads + [w[1] for w in list(writing)[:1]], return_when=FIRST_COMPLETED)
            elif writing:
                drain_written(block=True)
            else:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)

