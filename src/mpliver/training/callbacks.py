"""What a training run does besides training, as small callbacks in MONAI's handler style.

A `Trainer` calls each callback's hooks, in list order, on the main rank (rank 0 writes the run folder):
`on_fit_start` once the checkpoint is resumed and before the first epoch, `on_epoch_start`, `on_train_step`
after each optimiser step (only with `train.progress`), `on_epoch_end` with the epoch's `EpochRecord`, and
`on_fit_end`. The run folder's `run_info.json`, `log.csv`, `checkpoints/` and `tensorboard/`, the console's
epoch line and the command line's `on_epoch(row)` are each one callback here. `use_callbacks(...)` adds
callbacks to every `Trainer` built inside it: it is how the command line draws its progress bars for a
`train()` that crossval, the experiment sets or the demo call deep inside.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpliver.io.atomic import atomic_path
from mpliver.training import checkpoint as ckpt
from mpliver.training.loop import EpochStats, StepReport, ValStats
from mpliver.training.run_info import write_run_info

if TYPE_CHECKING:
    from mpliver.training.trainer import Trainer

log = logging.getLogger("mpliver.train")

LOG_CSV = "log.csv"
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "slices_per_s")


@dataclass
class EpochRecord:
    """One finished epoch: its log row (`LOG_COLUMNS`), the statistics behind it and whether the best
    metric improved (`val` is None on an epoch without validation)."""

    row: dict[str, Any]
    stats: EpochStats
    val: ValStats | None
    improved: bool
    final: bool  # the run's last epoch


class Callback:
    """Base class: every hook does nothing; a callback overrides the ones it needs."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch of this call (after a resume has restored the checkpoint)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch `epoch` (0-based) trains."""

    def on_train_step(self, trainer: Trainer, report: StepReport) -> None:
        """After each optimiser step, when the config asks for progress (`train.progress`)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        """After epoch `epoch` (0-based) has trained and, when due, validated."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch."""


_AMBIENT: ContextVar[tuple[Callback, ...]] = ContextVar("mpliver_training_callbacks", default=())


@contextlib.contextmanager
def use_callbacks(*callbacks: Callback) -> Iterator[None]:
    """Add `callbacks` to every `Trainer` built inside the block (after its own), e.g. a progress bar."""
    token = _AMBIENT.set(_AMBIENT.get() + tuple(callbacks))
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def ambient_callbacks() -> tuple[Callback, ...]:
    """The callbacks of the enclosing `use_callbacks` blocks, outermost first."""
    return _AMBIENT.get()


class RunInfo(Callback):
    """`config.yaml` and `run_info.json` at the first start; each resume adds `run_info.resumeN.json`."""

    def __init__(self, run_extra: dict[str, Any] | None = None):
        self.run_extra = run_extra or {}

    def on_fit_start(self, trainer: Trainer) -> None:
        start = trainer.start_epoch
        extra = {"fold_info": self.run_extra, "resumed_from_epoch": start if trainer.resuming else None}
        name = "run_info.json" if start == 0 else f"run_info.resume{start}.json"
        write_run_info(trainer.out_dir, trainer.config, trainer.config.train.seed, trainer.device,
                       extra=extra, name=name)


class CsvLog(Callback):
    """`log.csv`, one row per epoch; a resume first drops the rows past its checkpoint."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.path.exists():  # a run killed after logging an epoch it never saved
            with self.path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= trainer.start_epoch]
            with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:  # a kill keeps the old
                writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(record.row)


class Checkpoints(Callback):
    """`last.pt` after every epoch (and before the first step of a fresh run), `best.pt` when the best
    metric improves; a run without validation keeps its final epoch as best."""

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.start_epoch == 0:
            ckpt.save_checkpoint(trainer.last_path, trainer.snapshot(0))  # the last good state exists

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        state = trainer.snapshot(epoch + 1)
        ckpt.save_checkpoint(trainer.last_path, state)
        if record.improved or (trainer.data.val is None and record.final):
            ckpt.save_checkpoint(trainer.best_path, state)

    def on_fit_end(self, trainer: Trainer) -> None:
        if not trainer.best_path.exists() and trainer.last_path.exists():
            ckpt.save_checkpoint(trainer.best_path, ckpt.load_checkpoint(trainer.last_path))


class TensorBoard(Callback):
    """Each log column as a scalar in `tensorboard/`; nothing when TensorBoard is not installed."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: TensorBoard is an optional extra
        except ImportError:
            return
        self.writer = SummaryWriter(str(self.folder))

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        if self.writer is not None:
            for key in LOG_COLUMNS[1:]:
                self.writer.add_scalar(key, record.row[key], epoch + 1)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ConsoleLog(Callback):
    """One `epoch N/M key=value ...` line per epoch on the `mpliver.train` logger."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        log.info(
            "epoch %d/%d %s",
            epoch + 1,
            trainer.config.optim.epochs,
            " ".join(f"{k}={v:.4g}" for k, v in record.row.items() if k != "epoch"),
        )


class OnEpoch(Callback):
    """Calls `fn(row)` with each epoch's log row: the `on_epoch` argument of `fit` and `train`."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]):
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: EpochRecord) -> None:
        self.fn(record.row)


def default_callbacks(
    out_dir: Path, tensorboard: bool, run_extra: dict[str, Any] | None = None
) -> list[Callback]:
    """The run folder's callbacks, in writing order: run info, log, checkpoints, TensorBoard, console."""
    callbacks: list[Callback] = [RunInfo(run_extra), CsvLog(out_dir / LOG_CSV), Checkpoints()]
    if tensorboard:
        callbacks.append(TensorBoard(out_dir / "tensorboard"))
    callbacks.append(ConsoleLog())
    return callbacks


def emit(callbacks: Sequence[Callback], hook: str, *args: Any) -> None:
    """Call `hook` of every callback in order."""
    for callback in callbacks:
        getattr(callback, hook)(*args)
