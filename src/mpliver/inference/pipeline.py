"""The pipelined batch predictor (`predict --input DIR --workers N`, N >= 2).

This process holds the model(s) and runs the network stage; N - 1 preparation processes (spawned, one torch
thread each) read the studies, check them, register the phases and pre-process them into stacks; one writer
thread post-processes each study and writes its outputs with `write_outputs`. So the CPU stages of the next
studies overlap the network stage of the current one. Every stage is the same `Predictor` method the
sequential batch runs (`inference.predict`), on the same inputs, so the outputs are the same bytes as the
sequential batch's. Each preparation process builds its own `Predictor` from the settings once (the CPU
stages need no weights).

Where the liver stage runs: a liver mask given as a file is read and resampled in the preparation process
(it is CPU work). The bundle's liver model runs here, in the model process, on the model's device: it is a
network (on a GPU a preparation process would need its own CUDA context and a copy of the weights, and on the
CPU it would run with other thread settings than the sequential path, which need not give the same bits).
Its study then goes to a preparation process twice: once to be read, once to be registered and pre-processed.

Memory stays bounded: at most `max_in_flight` studies are between "submitted for reading" and "written"
(default N + 1: one per preparation process, one in the network, one being written). Large arrays travel
between processes as shared-memory tensors, not through a pipe. One bad study is reported in one line and
the batch goes on. A preparation process that dies (e.g. killed for memory) takes every unfinished task of
the pool with it, so no study is failed on that alone: the pool is restarted with the oldest of them alone in
it (the others wait), and only a study that kills a pool in which it ran alone fails, in one line; otherwise
the rest go on. Events (`on_case`, `on_stage`) come from this thread.
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

from mpliver.errors import MpliverError, OutputError
from mpliver.inference.clock import StageClock
from mpliver.inference.outputs import PredictionResult
from mpliver.inference.predict import Predictor
from mpliver.inference.settings import PredictSettings
from mpliver.inference.study import PreparedStudy, StudyLiver, StudyVolumes

START_METHOD = "spawn"  # not fork: a forked child of a process with torch threads can deadlock
_PREPARER: Predictor | None = None  # a preparation process's predictor (CPU stages only), built once


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


def _init_worker(settings: PredictSettings) -> None:
    global _PREPARER
    torch.set_num_threads(1)  # N - 1 of these share the cores with the model process
    _PREPARER = Predictor(settings)


def _run_task(case: str, task: Callable[[], Any]) -> _Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = task()
        except Exception as exc:  # reported as the sequential batch reports it; the batch goes on
            return _Outcome(error=failure_line(case, exc),
                            warnings=[(w.category, str(w.message)) for w in caught])
    return _Outcome(value, None, [(w.category, str(w.message)) for w in caught])


def _prepare_task(case: str, phases: dict[str, Path], liver_mask: Path,
                  values: tuple[int, ...] | None) -> _Outcome:
    """io, liver (from the given mask), registration and preprocess of one study."""
    return _run_task(case, lambda: _ship_prepared(_PREPARER.prepare_study(
        phases, case, liver_mask=liver_mask, liver_mask_values=values)))


def _read_task(case: str, phases: dict[str, Path]) -> _Outcome:
    """io of one study whose liver mask the model process makes."""
    return _run_task(case, lambda: _ship_study(_PREPARER.read_study(phases, case)))


def _register_task(study: StudyVolumes, liver: StudyLiver) -> _Outcome:
    """registration and preprocess of a study read by `_read_task`, with the liver mask (a shared tensor)
    the model process made."""
    def run() -> PreparedStudy:
        on_grid = replace(liver, mask=liver.mask.numpy())
        return _ship_prepared(_PREPARER.prepare(_PREPARER.register(_land_study(study), on_grid), on_grid))

    return _run_task(study.case_id, run)


@dataclass
class _Entry:
    """A study in a preparation process: the task and its arguments (to resubmit after a pool restart)."""

    case: str
    task: Callable[..., _Outcome]
    args: tuple
    future: Future | None = None  # None: waiting while another study runs alone after a pool died
    alone: bool = False  # it runs alone in a fresh pool: if that pool dies too, the study is the cause


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


class _Pipeline:
    """The state of one pipelined batch: the pool of preparation processes, the writer thread and the
    queues of studies between them (module notes)."""

    def __init__(self, predictor: Predictor, cases: Sequence[str],
                 phases_of: Callable[[str], dict[str, Path]], callbacks: PipelineCallbacks,
                 liver_mask_of: Callable[[str], Path] | None,
                 liver_mask_values: tuple[int, ...] | None, workers: int, limit: int):
        self.predictor, self.callbacks, self.phases_of = predictor, callbacks, phases_of
        self.liver_mask_of, self.liver_mask_values = liver_mask_of, liver_mask_values
        self.workers, self.limit = workers, limit
        self.pending = iter(cases)
        self.reading: deque[_Entry] = deque()   # io in a preparation process (liver from the model)
        self.preparing: deque[_Entry] = deque()  # prepare (or registration + preprocess) in one too
        self.writing: deque[tuple[str, Future]] = deque()
        self.in_flight = 0
        self.solo: _Entry | None = None  # the study running alone after a pool died (the others wait)
        self.context = torch.multiprocessing.get_context(START_METHOD)
        self.pool = self._new_pool()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="mpliver-writer")

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers - 1, mp_context=self.context, initializer=_init_worker,
                                   initargs=(self.predictor.settings,))

    def restart_pool(self, solo: _Entry | None = None) -> None:
        """A new pool after a preparation process died. The tasks the old one had not finished go again, in
        their order; with `solo`, only that one, alone, and the others wait until it has succeeded."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        self.solo = solo
        for queue in (self.reading, self.preparing):
            for other in queue:
                done = other.future is not None and other.future.done() and not other.future.cancelled()
                if done and other.future.exception() is None:
                    continue
                other.future = None if solo is not None and other is not solo else \
                    self.pool.submit(other.task, *other.args)

    def resume_waiting(self) -> None:
        """The study that ran alone succeeded: the ones waiting go to the pool again, in their order."""
        self.solo = None
        for queue in (self.reading, self.preparing):
            for other in queue:
                if other.future is None:
                    other.future = self.pool.submit(other.task, *other.args)

    def submit(self, entry: _Entry, queue: deque[_Entry]) -> None:
        if self.solo is not None:  # a study runs alone: this one waits for `resume_waiting`
            queue.append(entry)
            return
        try:
            entry.future = self.pool.submit(entry.task, *entry.args)
        except BrokenProcessPool:  # a process died since the last look
            self.restart_pool()
            entry.future = self.pool.submit(entry.task, *entry.args)
        queue.append(entry)

    def fail(self, case: str, line: str) -> None:
        self.in_flight -= 1
        self.callbacks.failed(case, line)

    def top_up(self) -> None:
        """Submit the next studies (skipping finished ones) until `limit` are in flight."""
        while self.in_flight < self.limit and self.solo is None:
            case = next(self.pending, None)
            if case is None:
                return
            if self.callbacks.skip(case):
                continue
            try:
                phases = self.phases_of(case)
                mask = None if self.liver_mask_of is None else self.liver_mask_of(case)
            except Exception as exc:
                self.callbacks.failed(case, failure_line(case, exc))
                continue
            self.in_flight += 1
            if mask is not None:
                self.submit(_Entry(case, _prepare_task, (case, phases, mask, self.liver_mask_values)),
                            self.preparing)
            else:
                self.submit(_Entry(case, _read_task, (case, phases)), self.reading)

    def outcome(self, entry: _Entry, queue: deque[_Entry]) -> _Outcome | None:
        """The entry's outcome; None when its task raised (the study failed) or its process died (the study
        failed if it ran alone, else it goes back to the head of `queue` and runs alone in a fresh pool)."""
        try:
            result = entry.future.result()
        except BrokenProcessPool:
            if entry.alone:  # it killed a pool in which it ran alone: it is the cause
                self.fail(entry.case, f"case {entry.case}: its preparation process died (out of memory?)")
                self.restart_pool()
                return None
            entry.alone = True
            queue.appendleft(entry)
            self.restart_pool(solo=entry)
            return None
        if entry is self.solo:
            self.resume_waiting()
        for category, message in result.warnings:
            warnings.warn(message, category, stacklevel=1)
        if result.error is not None:
            self.fail(entry.case, result.error)
            return None
        return result

    def model_stage(self, case: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except Exception as exc:  # e.g. out of GPU memory: this study fails, the batch goes on
            self.fail(case, failure_line(case, exc))
            return None

    def make_liver(self, entry: _Entry) -> None:
        """The liver stage of a study read in a preparation process, here with the bundle's liver model;
        then its registration and preprocess go back to a preparation process."""
        result = self.outcome(entry, self.reading)
        if result is None:
            return
        study = _land_study(result.value)
        if self.callbacks.start is not None:
            self.callbacks.start(entry.case)
        clock = StageClock(self.callbacks.stage, study.timings)
        liver = self.model_stage(entry.case, lambda: self.predictor.liver_mask(study, clock=clock))
        if liver is None:
            return
        shipped = replace(result.value, timings=study.timings)  # the shared volumes go on as they came
        args = (shipped, replace(liver, mask=_shared(liver.mask)))
        self.submit(_Entry(entry.case, _register_task, args), self.preparing)

    def run_network(self, entry: _Entry) -> None:
        """The network stage of a prepared study, here; its postprocess and writing go to the writer."""
        result = self.outcome(entry, self.preparing)
        if result is None:
            return
        study = _land_prepared(result.value)
        if self.callbacks.start is not None and self.liver_mask_of is not None:
            self.callbacks.start(entry.case)
        clock = StageClock(self.callbacks.stage, study.timings)
        prob = self.model_stage(entry.case, lambda: self.predictor.infer(study, clock))
        if prob is None:
            return
        study = replace(study, stacks=None)  # the stacks are not needed any more

        def finish_and_write() -> PredictionResult:
            done = self.predictor.finish_study(study, prob)
            self.callbacks.write(done)
            return done

        self.writing.append((entry.case, self.writer.submit(finish_and_write)))

    def drain_written(self, block: bool) -> None:
        """Report the studies the writer has finished, in order (waiting for the first when `block`)."""
        while self.writing and (block or self.writing[0][1].done()):
            case, future = self.writing.popleft()
            block = False
            try:
                result = future.result()
            except OutputError:  # a full or read-only disk fails every study alike: stop, as sequentially
                raise
            except Exception as exc:
                self.fail(case, failure_line(case, exc))
                continue
            self.in_flight -= 1
            self.callbacks.done(case, result)

    def run(self) -> None:
        try:
            while True:
                self.top_up()
                self.drain_written(block=False)
                if _ready(self.reading):  # the liver first: it unblocks a process
                    self.make_liver(self.reading.popleft())
                elif _ready(self.preparing):
                    self.run_network(self.preparing.popleft())
                elif self.reading or self.preparing:
                    heads = [q[0].future for q in (self.reading, self.preparing) if q and q[0].future]
                    wait(heads + [w[1] for w in list(self.writing)[:1]], return_when=FIRST_COMPLETED)
                elif self.writing:
                    self.drain_written(block=True)
                else:
                    break
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.writer.shutdown(wait=True)


def _ready(queue: deque[_Entry]) -> bool:
    """Whether the head of `queue` has finished (a waiting study, with no task yet, has not)."""
    return bool(queue) and queue[0].future is not None and queue[0].future.done()


def predict_pipelined(
    predictor: Predictor,
    cases: Sequence[str],
    phases_of: Callable[[str], dict[str, Path]],
    callbacks: PipelineCallbacks,
    *,
    liver_mask_of: Callable[[str], Path] | None = None,
    liver_mask_values: tuple[int, ...] | None = None,
    workers: int = 2,
    max_in_flight: int | None = None,
) -> None:
    """Predict `cases` with `predictor` through the pipeline (module notes): `workers` processes in all, this
    one included; `phases_of(case)` gives a study's phase files and `liver_mask_of(case)` its liver mask
    file (None: the bundle's liver model)."""
    if workers < 2:
        raise ValueError(f"the pipeline needs at least 2 workers, got {workers}")
    limit = max_in_flight if max_in_flight is not None else workers + 1
    if limit < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {limit}")
    _Pipeline(predictor, cases, phases_of, callbacks, liver_mask_of, liver_mask_values, workers, limit).run()
