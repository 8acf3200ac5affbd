"""torchrun / DDP support: one code path for 1 process, many GPUs, or CPU processes on `gloo`.

`torchrun --nproc_per_node N -m mpliver.cli train ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `init_distributed` reads them. Each epoch's sampled slice list is the same on every rank (it is a
function of seed and epoch) and is dealt out with a stride, so that rank r's i-th batch and the other ranks'
i-th batches together are exactly the single-process global batch of size `batch x world_size`. DDP averages
gradients over ranks, so with equal per-rank batches the update equals the single-process one (up to
BatchNorm's per-rank statistics: SyncBatchNorm on GPU; `gloo` has no SyncBatchNorm).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mpliver.errors import ConfigError, MpliverError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: rank, world size and local rank (GPU index on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Rank and world size from the torchrun environment (a single process when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise MpliverError(f"bad torchrun environment ({exc})") from None
    if world < 1 or not 0 <= rank < world:
        raise MpliverError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by the environment: `nccl` for CUDA, `gloo` on the CPU.

    Returns a single-process `DistInfo` (and initialises nothing) when WORLD_SIZE is 1 or unset.
    """
    info = env_dist_info()
    if not info.distributed:
        return info
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise MpliverError(f"WORLD_SIZE={info.world_size} but {var} is not set: launch with torchrun")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=backend,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return info


def cleanup() -> None:
    """Leave the process group (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def resolve_device(name: str = "auto", local_rank: int | None = None, what: str = "--device") -> torch.device:
    """auto -> CUDA when available, else the CPU; cuda (or its synonym gpu) -> CUDA (the `local_rank` GPU
    when given) or a ConfigError naming `what` (the option or config key) when there is none; cuda:N (gpu:N)
    as given."""
    if name == "gpu" or name.startswith("gpu:"):
        name = "cuda" + name[3:]
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"{what} must be auto, cpu, cuda or gpu, got '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{what} {name} asked for, but torch sees no CUDA device")
    if name.startswith("cuda:"):
        return torch.device(name)
    return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)


def process_device(device_type: str, info: DistInfo) -> torch.device:
    """The device of this rank: `cuda:LOCAL_RANK` on GPU, the CPU otherwise."""
    return torch.device("cuda", info.local_rank) if device_type == "cuda" else torch.device("cpu")


def shard(items: Sequence[T], info: DistInfo, pad: bool = True) -> list[T]:
    """Rank `info.rank`'s share of `items`: every `world_size`-th item starting at the rank.

    With `pad` the list is first extended by wrapping around, so every rank gets the same count (DDP needs the
    same number of steps on every rank). Batches of b consecutive items of the shards together form the
    single-process batches of b x world_size consecutive items.
    """
    items = list(items)
    if info.world_size == 1:
        return items
    if pad and items and len(items) % info.world_size:
        extra = info.world_size - len(items) % info.world_size
        items = items + (items * (extra // len(items) + 1))[:extra]
    return items[info.rank :: info.world_size]


def prepare_model(
    model: nn.Module, device: torch.device, info: DistInfo, find_unused: bool = False
) -> nn.Module:
    """Wrap for DDP when distributed: SyncBatchNorm on GPU only (gloo has none), then DDP.

    The model must already be on `device`. Returns the model itself in a single process.
    """
    if not info.distributed:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index], output_device=device.index, find_unused_parameters=find_unused
        )
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying module of a DDP wrapper (the one whose state dict is saved)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a float64 CPU tensor over ranks (for validation sums and flags); identity in a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    backend = dist.get_backend()
    if backend == "nccl":
        buf = values.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.cpu()
    buf = values.clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on any rank, so that every rank takes the same branch (e.g. stop on NaN)."""
    return bool(all_reduce_sum(torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)).item() > 0)
