"""One training epoch and one validation pass, shared by single-process and DDP runs.

Batches are dicts with `phases` ((B, P, C, H, W) tensor, or a list of P (B, C, H, W) tensors, PV first) and
`label` ((B, H, W) integer map). The data pipeline usually delivers the task's binary target already; where it
delivers the 0/1/2 label map instead, `target_fn` turns it into the target (tumour: label == 2; liver:
label >= 1). On GPU the forward pass runs under bf16
autocast with channels_last inputs; the loss is computed in float32. A non-finite loss stops every rank at
the same step, before the backward pass, with an `MpliverError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mpliver.errors import MpliverError
from mpliver.io.labels import IGNORE_INDEX, LIVER, TUMOR
from mpliver.runtime import DistInfo, all_reduce_sum, any_rank

LossFn = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]
TargetFn = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteLossError(MpliverError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochStats:
    loss: float
    slices: int
    seconds: float

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class StepReport:
    """Where an epoch stands after a step: for a progress bar (loss is the running mean of the epoch)."""

    epoch: int  # 0-based
    done: int  # steps done
    total: int | None  # steps in the epoch (None for a loader without a length)
    loss: float
    slices_per_s: float


ProgressFn = Callable[[StepReport], None]


@dataclass
class ValStats:
    loss: float
    dice: float
    slices: int
    foreground: int = 0  # reference foreground pixels; 0: the Dice cannot rank epochs (Trainer.record)


def tumor_target(label: torch.Tensor) -> torch.Tensor:
    """Binary tumour target (label 2)."""
    return (label == TUMOR).long()


def liver_target(label: torch.Tensor) -> torch.Tensor:
    """Binary liver target: liver and tumour (label >= 1), the stage-1 model's foreground."""
    return (label >= LIVER).long()


TARGETS: dict[str, TargetFn] = {"tumor": tumor_target, "liver": liver_target}


def _target(target_fn: TargetFn | None, label: torch.Tensor) -> torch.Tensor:
    return label.long() if target_fn is None else target_fn(label)


def split_batch(batch: Any, num_phases: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(phases list, label) from a batch dict or a (phases, label) pair; the first `num_phases` phases."""
    if isinstance(batch, Mapping):
        phases, label = batch["phases"], batch["label"]
    else:
        phases, label = batch[0], batch[1]
    if torch.is_tensor(phases):
        if phases.dim() != 5:
            raise MpliverError(f"a batch's phases must be (B, P, C, H, W), got shape {tuple(phases.shape)}")
        phases = list(phases.unbind(1))
    phases = list(phases)
    if num_phases is not None:
        if len(phases) < num_phases:
            raise MpliverError(f"the model needs {num_phases} phases but the data has {len(phases)}")
        phases = phases[:num_phases]
    return phases, label


def _to_device(
    phases: list[torch.Tensor], label: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[list[torch.Tensor], torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    non_blocking = device.type == "cuda"
    phases = [p.to(device, dtype=torch.float32, non_blocking=non_blocking, memory_format=fmt) for p in phases]
    return phases, label.to(device, non_blocking=non_blocking)


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    enabled = amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _float_outputs(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in outputs.items()}


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    device: torch.device,
    *,
    target_fn: TargetFn | None = None,
    num_phases: int | None = None,
    amp: bool = True,
    channels_last: bool = True,
    dist_info: DistInfo | None = None,
    progress: ProgressFn | None = None,
    epoch: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> EpochStats:
    """Train `model` over `loader` once; return the mean batch loss (over all ranks) and the speed.

    Speed is counted in slices over all ranks. `on_step(step, loss)` is a hook for tests and logging;
    `progress(report)` receives a `StepReport` after each step (the command line draws it as a bar).
    """
    dist_info = dist_info or DistInfo()
    channels_last = channels_last and device.type == "cuda"
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    loss_sum, batches, slices = 0.0, 0, 0
    start = time.perf_counter()
    if progress is not None:
        progress(StepReport(epoch, 0, total, float("nan"), 0.0))
    for step, batch in enumerate(loader):
        phases, label = split_batch(batch, num_phases)
        phases, label = _to_device(phases, label, device, channels_last)
        with _autocast(device, amp):
            outputs = model(phases)
        loss = loss_fn(_float_outputs(outputs), _target(target_fn, label))
        value = float(loss.detach())
        if any_rank(not math.isfinite(value)):
            raise NonFiniteLossError(
                f"non-finite training loss ({value}) at epoch {epoch + 1}, step {step + 1}: "
                "lower optim.lr or check the input data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += value
        batches += 1
        slices += label.shape[0] * dist_info.world_size
        if on_step is not None:
            on_step(step, value)
        if progress is not None:
            speed = slices / max(time.perf_counter() - start, 1e-9)
            progress(StepReport(epoch, step + 1, total, loss_sum / batches, speed))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    # the logged loss is the mean over every rank's batches (identical on all ranks)
    loss_sum, batches = all_reduce_sum(torch.tensor([loss_sum, batches], dtype=torch.float64)).tolist()
    return EpochStats(loss=loss_sum / batches if batches else float("nan"), slices=slices, seconds=seconds)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn,
    device: torch.device,
    *,
    target_fn: TargetFn | None = None,
    num_phases: int | None = None,
    amp: bool = True,
    channels_last: bool = True,
) -> ValStats:
    """Loss and Dice of the foreground class over all validation slices, summed over DDP ranks.

    Dice is pooled over the slices, 2 sum|A and B| / sum(|A| + |B|), so slices without foreground count
    through their false positives; it is 1.0 when neither reference nor prediction has any foreground.
    Pixels whose target is IGNORE_INDEX count in neither term.
    """
    channels_last = channels_last and device.type == "cuda"
    model.eval()
    # sums: loss x slices, slices, |A and B|, |A| + |B|, |A|
    sums = torch.zeros(5, dtype=torch.float64)
    for batch in loader:
        phases, label = split_batch(batch, num_phases)
        phases, label = _to_device(phases, label, device, channels_last)
        with _autocast(device, amp):
            outputs = model(phases)
        outputs = _float_outputs(outputs)
        target = _target(target_fn, label)
        loss = loss_fn(outputs, target)
        keep = target != IGNORE_INDEX  # faint lesions left out of training count in neither Dice term
        pred = (outputs["logits"].argmax(1) == 1) & keep
        n = label.shape[0]
        sums += torch.tensor(
            [
                float(loss) * n,
                n,
                float((pred & (target == 1)).sum()),
                float(pred.sum() + (target == 1).sum()),
                float((target == 1).sum()),
            ],
            dtype=torch.float64,
        )
    sums = all_reduce_sum(sums)
    loss_sum, count, inter, total, reference = sums.tolist()
    if count == 0:
        return ValStats(loss=float("nan"), dice=float("nan"), slices=0)
    dice = 1.0 if total == 0 else 2.0 * inter / total
    return ValStats(loss=loss_sum / count, dice=dice, slices=int(count), foreground=int(reference))
