"""`train()`: one model on one fold, from a config; `Trainer` (and `fit()`, its one-call form): the epoch
loop it runs, in named stages, testable on its own; what a run writes is done by `callbacks`.

A run folder holds `config.yaml`, `run_info.json`, `log.csv` (one row per epoch), `checkpoints/last.pt` and
`checkpoints/best.pt`, and `tensorboard/` when TensorBoard is installed. Exact resume: the data order and the
augmentation of epoch e are a function of (seed, epoch) only (every RNG is re-seeded at each epoch start, and
the DataLoader's worker seeds come from a generator seeded the same way), and `last.pt` holds the model,
optimizer and scheduler state, so that 1 epoch + resume + 1 epoch gives the weights of 2 epochs in one go.
`train()` is what `mpliver train` and cross-validation call, once per fold.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from mpliver.data.sampling import make_loader
from mpliver.errors import MpliverError
from mpliver.runtime import (
    DistInfo,
    any_rank,
    barrier,
    cleanup,
    init_distributed,
    prepare_model,
    process_device,
    resolve_device,
    shard,
    unwrap,
)
from mpliver.training import checkpoint as ckpt
from mpliver.training.callbacks import (
    LOG_COLUMNS,
    LOG_CSV,
    Callback,
    EpochRecord,
    OnEpoch,
    ambient_callbacks,
    default_callbacks,
    emit,
)
from mpliver.training.config import (
    RESUME_SAFE_KEYS,
    Config,
    ConfigError,
    config_differences,
    describe_differences,
)
from mpliver.training.data import TrainingData, build_loss, build_model, build_training_data
from mpliver.training.loop import (
    EpochStats,
    LossFn,
    NonFiniteLossError,
    StepReport,
    ValStats,
    train_one_epoch,
    validate,
)

__all__ = [
    "LOG_COLUMNS", "LOG_CSV", "Trainer", "epoch_seed", "fit", "make_optimizer", "seed_everything", "train",
]


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that is a function of (seed, epoch, stream) only."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator is what libraries draw from
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: Config) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser (the paper's SGD with momentum and weight decay, or AdamW) and the StepLR schedule
    (stepped once per epoch)."""
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adamw":  # for short from-scratch CPU runs; `momentum` is Adam's beta1
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_epochs, gamma=o.gamma)
    return optimizer, scheduler


class Trainer:
    """One training run into `out_dir`, in named stages: `resume`, then per epoch `train_epoch`, `validate`
    and `end_epoch`; `fit` runs them. Everything but training (run info, `log.csv`, checkpoints,
    TensorBoard, console lines) is a callback (`mpliver.training.callbacks`): the run folder's own first,
    then `callbacks`, then those of enclosing `use_callbacks` blocks.

    The model is freshly built with the config's seed; the optimiser and schedule come from the config.
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        data: TrainingData,
        out_dir: str | Path,
        *,
        loss_fn: LossFn,
        dist_info: DistInfo | None = None,
        device: torch.device | None = None,
        callbacks: Sequence[Callback] = (),
        run_extra: dict[str, Any] | None = None,
    ):
        self.config, self.model, self.data, self.loss_fn = config, model, data, loss_fn
        self.out_dir = Path(out_dir)
        self.dist_info = dist_info or DistInfo()
        self.device = device or resolve_device(config.train.device, what="train.device")
        ckpt_dir = self.out_dir / config.train.checkpoint_dir
        self.last_path, self.best_path = ckpt_dir / ckpt.LAST, ckpt_dir / ckpt.BEST
        self.num_phases = getattr(getattr(model, "config", None), "num_phases", None)
        self.callbacks: list[Callback] = [
            *default_callbacks(self.out_dir, config.train.tensorboard, run_extra),
            *callbacks,
            *ambient_callbacks(),
        ]
        model.to(self.device)
        if self.device.type == "cuda" and config.train.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer, self.scheduler = make_optimizer(model, config)
        self.start_epoch, self.best, self.resuming = 0, None, False
        self.ddp_model: nn.Module = model
        # the moving average of the weights (train.ema), updated after every optimiser step on every rank
        self.ema = _moving_average(model, config.train.ema) if config.train.ema > 0 else None

    @property
    def evaluated(self) -> nn.Module:
        """The weights that validation, the checkpoints' `model` and every later use of the run take: the
        moving average with `train.ema`, else the trained weights."""
        return self.ema.module if self.ema is not None else unwrap(self.ddp_model)

    def resume(self, resume: bool = True) -> int:
        """Restore model, optimiser, schedule and RNG states from `last.pt` (with `resume`; a fresh start if
        there is none); without it, a folder that already holds a checkpoint is refused. Returns the number
        of completed epochs, and wraps the model for DDP."""
        if self.last_path.exists() and not resume:
            raise MpliverError(
                "already holds a training run; pass --resume to continue it or choose another --out",
                self.out_dir,
            )
        self.resuming = resume
        if resume and self.last_path.exists():
            state = ckpt.load_checkpoint(self.last_path)
            _check_resumable(state, self.config, self.last_path, _model_config(self.model))
            # with train.ema (held equal by the check above) "model" is the average, "model_raw" the weights
            self.model.load_state_dict(state["model_raw"] if self.ema is not None else state["model"])
            if self.ema is not None:
                self.ema.module.load_state_dict(state["model"])
                self.ema.n_averaged.fill_(int(state["ema_steps"]))
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            ckpt.restore_rng_state(state["rng"])
            self.start_epoch, self.best = int(state["epoch"]), state.get("best_metric")
        barrier()  # every rank has looked at last.pt before rank 0 writes one
        cfg_t = self.config.train
        self.ddp_model = prepare_model(self.model, self.device, self.dist_info, cfg_t.find_unused_parameters)
        return self.start_epoch

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """The checkpoint after `epoch` completed epochs: weights, optimiser, schedule, RNG and config."""
        model = unwrap(self.ddp_model)
        averaged = {} if self.ema is None else {"model_raw": model.state_dict(),
                                                "ema_steps": int(self.ema.n_averaged)}
        return {
            "model": self.evaluated.state_dict(),
            **averaged,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "rng": ckpt.capture_rng_state({"seed": self.config.train.seed, "next_epoch": epoch}),
            "best_metric": self.best,
            "config": self.config.to_dict(),
            # the resolved architecture: rebuilds the same network even if a registry default changes later
            "model_config": _model_config(model),
        }

    def train_epoch(self, epoch: int) -> EpochStats:
        """Train epoch `epoch` (0-based) in its (seed, epoch)-determined data order; step the schedule."""
        cfg_t, cfg_d = self.config.train, self.config.data
        seed_everything(epoch_seed(cfg_t.seed, epoch, self.dist_info.rank))
        if self.dist_info.is_main:
            emit(self.callbacks, "on_epoch_start", self, epoch)
        indices = shard(list(self.data.epoch_indices(epoch)), self.dist_info)
        loader = _loader(self.data.train, indices, cfg_d.batch_size, cfg_d.num_workers, cfg_t.seed, epoch,
                         self.device)
        progress = self._report_step if cfg_t.progress and self.dist_info.is_main else None
        try:
            stats = train_one_epoch(
                self.ddp_model, loader, self.optimizer, self.loss_fn, self.device,
                target_fn=self.data.target_fn, num_phases=self.num_phases, amp=cfg_t.amp,
                channels_last=cfg_t.channels_last, dist_info=self.dist_info, progress=progress, epoch=epoch,
                on_step=self._average if self.ema is not None else None,
            )
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(
                f"{exc}; the last good checkpoint (epoch {epoch}) is kept", self.last_path
            ) from None
        self.scheduler.step()
        return stats

    def validate(self, epoch: int) -> ValStats | None:
        """Validation loss and Dice after epoch `epoch`, every `train.val_every` epochs and after the last
        (None on other epochs and without validation data)."""
        cfg_t, cfg_d, epochs = self.config.train, self.config.data, self.config.optim.epochs
        if self.data.val is None or ((epoch + 1) % cfg_t.val_every != 0 and epoch + 1 != epochs):
            return None
        val_indices = shard(range(len(self.data.val)), self.dist_info, pad=False)  # type: ignore[arg-type]
        val_loader = _loader(
            self.data.val, val_indices, cfg_d.batch_size, cfg_d.num_workers, cfg_t.seed, 2**31, self.device
        )
        return validate(
            self.evaluated, val_loader, self.loss_fn, self.device, target_fn=self.data.target_fn,
            num_phases=self.num_phases, amp=cfg_t.amp, channels_last=cfg_t.channels_last,
        )

    def record(self, epoch: int, lr: float, stats: EpochStats, val: ValStats | None) -> EpochRecord:
        """The epoch's log row; updates the best metric (`train.best_metric`) when validation ran."""
        row = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            "val_loss": val.loss if val else float("nan"),
            "val_dice": val.dice if val else float("nan"),
            "lr": lr,
            "seconds": round(stats.seconds, 3),
            "slices_per_s": round(stats.slices_per_s, 2),
        }
        improved = False
        if val is not None:
            # a validation set without reference foreground (no tumour, or only lesions that
            # data.faint_lesion_cnr leaves out) rewards predicting nothing, by Dice (1 for every empty
            # prediction) and by loss alike, so it cannot rank the epochs: such a run keeps its latest epoch,
            # as a run without validation does
            metric = val.dice if self.config.train.best_metric == "val_dice" else -val.loss
            improved = self.best is None or metric > self.best or val.foreground == 0
            if improved:
                self.best = metric
        return EpochRecord(row, stats, val, improved, final=epoch + 1 == self.config.optim.epochs)

    def end_epoch(self, epoch: int, record: EpochRecord) -> None:
        """Refuse non-finite weights (on every rank), then hand the record to the callbacks."""
        if any_rank(not ckpt.state_is_finite(unwrap(self.ddp_model).state_dict())
                    or not ckpt.state_is_finite(self.evaluated.state_dict())):
            raise NonFiniteLossError(
                f"non-finite weights after epoch {epoch + 1}; "
                f"the last good checkpoint (epoch {epoch}) is kept",
                self.last_path,
            )
        if self.dist_info.is_main:
            emit(self.callbacks, "on_epoch_end", self, epoch, record)
        barrier()

    def fit(self, resume: bool = False) -> Path:
        """Resume (or refuse an existing run without `resume`), train the remaining epochs; -> `out_dir`."""
        self.resume(resume)
        if self.dist_info.is_main:
            emit(self.callbacks, "on_fit_start", self)
        for epoch in range(self.start_epoch, self.config.optim.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            stats = self.train_epoch(epoch)
            self.end_epoch(epoch, self.record(epoch, lr, stats, self.validate(epoch)))
        if self.dist_info.is_main:
            emit(self.callbacks, "on_fit_end", self)
        return self.out_dir

    def _average(self, step: int, loss: float) -> None:
        """After each optimiser step: fold the new weights into the moving average (train.ema)."""
        assert self.ema is not None
        self.ema.update_parameters(unwrap(self.ddp_model))

    def _report_step(self, report: StepReport) -> None:
        emit(self.callbacks, "on_train_step", self, report)


def _moving_average(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s weights and buffers (batch-norm statistics included)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def fit(
    config: Config,
    model: nn.Module,
    data: TrainingData,
    out_dir: str | Path,
    *,
    resume: bool = False,
    loss_fn: LossFn,
    dist_info: DistInfo | None = None,
    device: torch.device | None = None,
    run_extra: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train `model` (freshly built with the config's seed) for `config.optim.epochs` epochs into `out_dir`.

    With `resume`, continue from `out_dir/checkpoints/last.pt` (a fresh start if there is none; a no-op
    for a complete run). Without it, a folder that already holds a checkpoint is refused. On a
    non-finite loss, `last.pt` holds the last completed epoch and a `NonFiniteLossError` names it.
    `on_epoch(row)` receives each epoch's log row on rank 0 (for the command line); `callbacks` are added
    to the run folder's own (`Trainer`).
    """
    trainer = Trainer(config, model, data, out_dir, loss_fn=loss_fn, dist_info=dist_info, device=device,
                      callbacks=_with_on_epoch(callbacks, on_epoch), run_extra=run_extra)
    return trainer.fit(resume=resume)


def _with_on_epoch(
    callbacks: Sequence[Callback], on_epoch: Callable[[dict[str, Any]], None] | None
) -> list[Callback]:
    return [*callbacks, *([OnEpoch(on_epoch)] if on_epoch is not None else [])]


def _check_resumable(state: dict[str, Any], config: Config, path: Path,
                     model_config: dict[str, Any] | None = None) -> None:
    """A resumed run must compute what the checkpoint's run computed: every config key but those of
    `RESUME_SAFE_KEYS` (how it runs, and the number of epochs) must be the same; all that differ are named.
    Otherwise the optimiser state would carry the old settings while config.yaml claimed the new ones.
    The network is compared as the checkpoint stored it (`model_config`, the model it trained) against
    `model_config`, the model built now, where both are known: a registry default changed since the run
    was written is then named with the run's own value, and an explicit setting that restores it passes."""
    saved = state.get("config")
    if not saved:
        raise ConfigError("cannot resume: the checkpoint records no config; choose another --out", path)
    diffs = config_differences(saved, config.to_dict(), ignore=RESUME_SAFE_KEYS)
    stored = state.get("model_config")
    if stored and model_config:
        fields = sorted(set(stored) | set(model_config))
        diffs = [d for d in diffs if not d[0].startswith("model.")] + [
            (f"model.{k}", stored.get(k), model_config.get(k)) for k in fields
            if stored.get(k) != model_config.get(k)]
    if diffs:
        raise ConfigError(
            f"cannot resume with a different config ({describe_differences(diffs)}); resume with the run's "
            f"settings (its config.yaml; only {', '.join(sorted(RESUME_SAFE_KEYS))} may change) or "
            "choose another --out",
            path,
        )


def _loader(
    dataset: TorchDataset,
    indices: Sequence[Any],
    batch_size: int,
    workers: int,
    seed: int,
    epoch: int,
    device: torch.device,
) -> DataLoader:
    return make_loader(dataset, indices, batch_size, workers, epoch_seed(seed, epoch, 1_000_003),
                       pin_memory=device.type == "cuda")


def _model_config(model: torch.nn.Module) -> dict[str, Any] | None:
    """The model's resolved `ModelConfig` as a dict (None for modules without one, e.g. test doubles)."""
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def train(
    config: Config,
    data_dir: str | Path,
    fold: int | None,
    out_dir: str | Path,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train one model on one fold of a pre-processed cache (or a dataset, pre-processed first) -> run dir.

    `fold` is the held-out test fold (its cases are never seen); validation uses a seeded share
    (`data.val_fraction`) of the remaining cases. `fold=None` trains on every case. Under torchrun every rank
    calls this with the same arguments; rank 0 writes the run folder. `on_epoch` and `callbacks` as in `fit`.
    """
    device = resolve_device(config.train.device, what="train.device")
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    dist_info = init_distributed(device.type)
    device = process_device(device.type, dist_info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        seed_everything(config.train.seed)
        model = build_model(config)
        data, extra = build_training_data(config, data_dir, fold, dist_info)
        trainer = Trainer(config, model, data, out_dir, loss_fn=build_loss(config), dist_info=dist_info,
                          device=device, callbacks=_with_on_epoch(callbacks, on_epoch), run_extra=extra)
        return trainer.fit(resume=resume)
    finally:
        cleanup()
