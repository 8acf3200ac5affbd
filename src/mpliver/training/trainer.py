"""`train()`: one model on one fold, from a config; `fit()`: the epoch loop it runs, testable on its own.

A run folder holds `config.yaml`, `run_info.json`, `log.csv` (one row per epoch), `checkpoints/last.pt` and
`checkpoints/best.pt`, and `tensorboard/` when TensorBoard is installed. Exact resume: the data order and the
augmentation of epoch e are a function of (seed, epoch) only (every RNG is re-seeded at each epoch start, and
the DataLoader's worker seeds come from a generator seeded the same way), and `last.pt` holds the model,
optimizer and scheduler state, so that 1 epoch + resume + 1 epoch gives the weights of 2 epochs in one go.
`train()` is what `mpliver train` and cross-validation call, once per fold.
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
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
from mpliver.training.config import (
    RESUME_SAFE_KEYS,
    Config,
    ConfigError,
    config_differences,
    describe_differences,
)
from mpliver.training.data import TrainingData, build_loss, build_model, build_training_data
from mpliver.training.loop import LossFn, NonFiniteLossError, train_one_epoch, validate
from mpliver.training.run_info import write_run_info

log = logging.getLogger("mpliver.train")

LOG_CSV = "log.csv"
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "slices_per_s")




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
) -> Path:
    """Train `model` (freshly built with the config's seed) for `config.optim.epochs` epochs into `out_dir`.

    With `resume`, continue from `out_dir/checkpoints/last.pt` (a fresh start if there is none; a no-op
    for a complete run). Without it, a folder that already holds a checkpoint is refused. On a
    non-finite loss, `last.pt` holds the last completed epoch and a `NonFiniteLossError` names it.
    `on_epoch(row)` receives each epoch's log row on rank 0 (for the command line).
    """
    out_dir = Path(out_dir)
    dist_info = dist_info or DistInfo()
    device = device or resolve_device(config.train.device, what="train.device")
    cfg_t, cfg_d = config.train, config.data
    ckpt_dir = out_dir / cfg_t.checkpoint_dir
    last_path, best_path = ckpt_dir / ckpt.LAST, ckpt_dir / ckpt.BEST
    target_fn = data.target_fn
    num_phases = getattr(getattr(model, "config", None), "num_phases", None)

    model.to(device)
    if device.type == "cuda" and cfg_t.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, config)

    start_epoch, best = 0, None
    if last_path.exists() and not resume:
        raise MpliverError(
            "already holds a training run; pass --resume to continue it or choose another --out", out_dir
        )
    if resume and last_path.exists():
        state = ckpt.load_checkpoint(last_path)
        _check_resumable(state, config, last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rng_state(state["rng"])
        start_epoch, best = int(state["epoch"]), state.get("best_metric")
    barrier()  # every rank has looked at last.pt before rank 0 writes one
    ddp_model = prepare_model(model, device, dist_info, cfg_t.find_unused_parameters)

    def snapshot(epoch: int) -> dict[str, Any]:
        return {
            "model": unwrap(ddp_model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "rng": ckpt.capture_rng_state({"seed": cfg_t.seed, "next_epoch": epoch}),
            "best_metric": best,
            "config": config.to_dict(),
            # the resolved architecture: rebuilds the same network even if a registry default changes later
            "model_config": _model_config(unwrap(ddp_model)),
        }

    if dist_info.is_main:
        extra = {"fold_info": run_extra or {}, "resumed_from_epoch": start_epoch if resume else None}
        # the first start writes run_info.json; each resume adds its own record beside it
        info_name = "run_info.json" if start_epoch == 0 else f"run_info.resume{start_epoch}.json"
        write_run_info(out_dir, config, cfg_t.seed, device, extra=extra, name=info_name)
        _truncate_log(out_dir / LOG_CSV, start_epoch)
        if start_epoch == 0:
            ckpt.save_checkpoint(last_path, snapshot(0))  # the last good state exists before any step
    writer = _tensorboard(out_dir, cfg_t.tensorboard and dist_info.is_main)

    for epoch in range(start_epoch, config.optim.epochs):
        seed_everything(epoch_seed(cfg_t.seed, epoch, dist_info.rank))
        indices = shard(list(data.epoch_indices(epoch)), dist_info)
        loader = _loader(data.train, indices, cfg_d.batch_size, cfg_d.num_workers, cfg_t.seed, epoch, device)
        lr = optimizer.param_groups[0]["lr"]
        try:
            stats = train_one_epoch(
                ddp_model,
                loader,
                optimizer,
                loss_fn,
                device,
                target_fn=target_fn,
                num_phases=num_phases,
                amp=cfg_t.amp,
                channels_last=cfg_t.channels_last,
                dist_info=dist_info,
                progress=cfg_t.progress,
                epoch=epoch,
            )
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(
                f"{exc}; the last good checkpoint (epoch {epoch}) is kept", last_path
            ) from None
        scheduler.step()
        val = None
        if data.val is not None and ((epoch + 1) % cfg_t.val_every == 0 or epoch + 1 == config.optim.epochs):
            val_indices = shard(range(len(data.val)), dist_info, pad=False)  # type: ignore[arg-type]
            val_loader = _loader(
                data.val, val_indices, cfg_d.batch_size, cfg_d.num_workers, cfg_t.seed, 2**31, device
            )
            val = validate(
                unwrap(ddp_model),
                val_loader,
                loss_fn,
                device,
                target_fn=target_fn,
                num_phases=num_phases,
                amp=cfg_t.amp,
                channels_last=cfg_t.channels_last,
            )
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
            metric = val.dice if cfg_t.best_metric == "val_dice" else -val.loss
            improved = best is None or metric > best
            if improved:
                best = metric
        if any_rank(not ckpt.state_is_finite(unwrap(ddp_model).state_dict())):
            raise NonFiniteLossError(
                f"non-finite weights after epoch {epoch + 1}; "
                f"the last good checkpoint (epoch {epoch}) is kept",
                last_path,
            )
        if dist_info.is_main:
            state = snapshot(epoch + 1)
            _append_log(out_dir / LOG_CSV, row)
            if writer is not None:
                for key in LOG_COLUMNS[1:]:
                    writer.add_scalar(key, row[key], epoch + 1)
            ckpt.save_checkpoint(last_path, state)
            if improved or (data.val is None and epoch + 1 == config.optim.epochs):
                ckpt.save_checkpoint(best_path, state)
            log.info(
                "epoch %d/%d %s",
                epoch + 1,
                config.optim.epochs,
                " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
            )
            if on_epoch is not None:
                on_epoch(row)
        barrier()
    if writer is not None:
        writer.close()
    if dist_info.is_main and not best_path.exists() and last_path.exists():
        ckpt.save_checkpoint(best_path, ckpt.load_checkpoint(last_path))
    return out_dir


def _check_resumable(state: dict[str, Any], config: Config, path: Path) -> None:
    """A resumed run must compute what the checkpoint's run computed: every config key but those of
    `RESUME_SAFE_KEYS` (how it runs, and the number of epochs) must be the same; all that differ are named.
    Otherwise the optimiser state would carry the old settings while config.yaml claimed the new ones."""
    saved = state.get("config")
    if not saved:
        raise ConfigError("cannot resume: the checkpoint records no config; choose another --out", path)
    diffs = config_differences(saved, config.to_dict(), ignore=RESUME_SAFE_KEYS)
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


def _truncate_log(path: Path, keep_epochs: int) -> None:
    """Drop log rows past the checkpoint (a run killed after logging an epoch it never saved)."""
    if not path.exists():
        return
    from mpliver.io.atomic import atomic_path

    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= keep_epochs]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:  # a kill here keeps the old log
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _model_config(model: torch.nn.Module) -> dict[str, Any] | None:
    """The model's resolved `ModelConfig` as a dict (None for modules without one, e.g. test doubles)."""
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _tensorboard(out_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def train(
    config: Config,
    data_dir: str | Path,
    fold: int | None,
    out_dir: str | Path,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train one model on one fold of a pre-processed cache (or a dataset, pre-processed first) -> run dir.

    `fold` is the held-out test fold (its cases are never seen); validation uses a seeded share
    (`data.val_fraction`) of the remaining cases. `fold=None` trains on every case. Under torchrun every rank
    calls this with the same arguments; rank 0 writes the run folder.
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
        return fit(
            config,
            model,
            data,
            out_dir,
            resume=resume,
            loss_fn=build_loss(config),
            dist_info=dist_info,
            device=device,
            run_extra=extra,
            on_epoch=on_epoch,
        )
    finally:
        cleanup()
