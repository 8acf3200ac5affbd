"""The training progress bar of `mpliver train`, `crossval`, `experiments` and `demo`: a training callback
that draws each epoch's `StepReport`s with rich."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mpliver.training.callbacks import Callback, EpochRecord
from mpliver.training.loop import StepReport


class TrainProgress(Callback):
    """A transient bar per training epoch on stderr (steps, mean loss, slices/s) when stderr is a terminal.

    Use it as a context manager around the run, so that a run that stops with an error takes its bar along.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None

    def on_train_step(self, trainer: Any, report: StepReport) -> None:
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[speed]:.1f} slices/s"),
                TimeRemainingColumn(),
                transient=True,
                console=self.console,
            )
            self._task = self._bar.add_task(f"epoch {report.epoch + 1}", total=report.total,
                                            loss=float("nan"), speed=0.0)
            self._bar.start()
        self._bar.update(self._task, completed=report.done, loss=report.loss, speed=report.slices_per_s)

    def on_epoch_end(self, trainer: Any, epoch: int, record: EpochRecord) -> None:
        self.close()

    def close(self) -> None:
        """Stop and remove the bar of the current epoch, if one is drawn."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
