"""The Trainer's stages and callbacks: hook order, the records they receive, `use_callbacks`, step reports,
and that the library leaves drawing (rich) to the command line."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from helpers.train_toys import ToyNet, ce_loss, toy_data
from mpliver.training.callbacks import (
    LOG_COLUMNS,
    Callback,
    CsvLog,
    OnEpoch,
    ambient_callbacks,
    use_callbacks,
)
from mpliver.training.config import load_config
from mpliver.training.trainer import Trainer, fit, seed_everything

SRC = Path(__file__).resolve().parents[2] / "src" / "mpliver"


def _config(epochs: int, *extra: str):
    return load_config("paper", [
        f"optim.epochs={epochs}", "optim.lr=0.05", "data.batch_size=4", "data.num_workers=0",
        "train.progress=false", "train.seed=3", "train.device=cpu", "train.tensorboard=false", *extra,
    ])


def _model() -> ToyNet:
    seed_everything(3)
    return ToyNet()


class Recorder(Callback):
    """Notes every hook call; checks what the run folder holds when `on_fit_start` runs."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.records = []
        self.steps = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.start_epoch, trainer.last_path.exists()))

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_train_step(self, trainer, report):
        self.steps.append(report)

    def on_epoch_end(self, trainer, epoch, record):
        self.calls.append(("epoch_end", epoch))
        self.records.append(record)

    def on_fit_end(self, trainer):
        self.calls.append(("fit_end",))


def test_hooks_run_in_order_with_each_epoch_record(tmp_path):
    rec = Recorder()
    rows = []
    fit(_config(2), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss, callbacks=[rec],
        on_epoch=rows.append)
    assert rec.calls == [("fit_start", 0, True), ("epoch_start", 0), ("epoch_end", 0), ("epoch_start", 1),
                         ("epoch_end", 1), ("fit_end",)]
    assert [r.row["epoch"] for r in rec.records] == [1, 2]
    assert [r.final for r in rec.records] == [False, True]
    assert tuple(rec.records[0].row) == LOG_COLUMNS
    assert rows == [r.row for r in rec.records]  # on_epoch sees the same rows, after the callbacks
    assert all(r.val is not None and r.row["val_dice"] == r.val.dice for r in rec.records)
    assert rec.records[0].improved  # the first validation always improves on nothing
    assert rec.steps == []  # train.progress=false: no step reports


def test_resume_of_a_finished_run_runs_no_epoch(tmp_path):
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss)
    rec = Recorder()
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss, resume=True, callbacks=[rec])
    assert rec.calls == [("fit_start", 1, True), ("fit_end",)]


def test_step_reports_count_the_epoch(tmp_path):
    rec = Recorder()
    fit(_config(1, "train.progress=true"), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss,
        callbacks=[rec])
    total = rec.steps[-1].total
    assert total and [s.done for s in rec.steps] == list(range(0, total + 1))  # 0: the epoch starts
    assert math.isnan(rec.steps[0].loss)
    assert all(s.epoch == 0 and math.isfinite(s.loss) and s.slices_per_s > 0 for s in rec.steps[1:])


def test_use_callbacks_reaches_trainers_built_inside_only(tmp_path):
    rec = Recorder()
    with use_callbacks(rec):
        assert ambient_callbacks() == (rec,)
        trainer = Trainer(_config(1), _model(), toy_data(), tmp_path / "a", loss_fn=ce_loss)
        assert trainer.callbacks[-1] is rec
        trainer.fit()
    assert ambient_callbacks() == ()
    assert ("fit_end",) in rec.calls
    outside = Trainer(_config(1), _model(), toy_data(), tmp_path / "b", loss_fn=ce_loss)
    assert rec not in outside.callbacks


def test_stages_can_be_run_one_by_one(tmp_path):
    trainer = Trainer(_config(2, "train.val_every=2"), _model(), toy_data(), tmp_path / "run",
                      loss_fn=ce_loss, callbacks=[OnEpoch(lambda row: None)])
    assert trainer.resume(False) == 0
    stats = trainer.train_epoch(0)
    assert stats.slices > 0 and math.isfinite(stats.loss)
    assert trainer.validate(0) is None  # val_every=2: not a validation epoch
    assert trainer.validate(1) is not None  # the last epoch always validates
    record = trainer.record(0, 0.05, stats, None)
    assert not record.improved and math.isnan(record.row["val_dice"])


def test_a_resume_drops_log_rows_past_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    fit(_config(1), _model(), toy_data(), run, loss_fn=ce_loss)
    log = run / "log.csv"
    log.write_text(log.read_text() + "2,0.5,0.5,0.5,0.05,1.0,10.0\n")  # an epoch logged but never saved
    fit(_config(1), _model(), toy_data(), run, loss_fn=ce_loss, resume=True)
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "1"]


def test_csv_log_callback_alone_writes_header_and_rows(tmp_path):
    rec = Recorder()
    fit(_config(1), _model(), toy_data(), tmp_path / "run", loss_fn=ce_loss, callbacks=[rec])
    path = tmp_path / "copy.csv"
    cb = CsvLog(path)
    cb.on_epoch_end(None, 0, rec.records[0])  # type: ignore[arg-type]
    assert path.read_text().splitlines()[0] == ",".join(LOG_COLUMNS)


@pytest.mark.parametrize("package", ["training", "data"])
def test_the_library_does_not_draw_rich(package):
    for path in sorted((SRC / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "rich" or n.startswith("rich.") for n in names), f"{path} imports rich"
