"""Training and inference throughput and peak memory of several models, measured in one run (`mpliver bench`).

Figures on a shared or noisy machine drift, so every model is timed in the same rounds: each round runs one
training step of every model (in a rotated order), then one inference pass of every model, and the per-model
median over rounds is reported together with its ratio to `add` (FLF-add): the median of the per-round
ratios, so that both timings of a pair share the machine's state. Ratios from one run compare like with like
(same flags, same noise); absolute figures from different runs do not.

Memory: on CUDA, `torch.cuda.max_memory_allocated` over one step (after a reset). On the CPU there is no
allocator statistic, so the peak is the largest total size of live tensor storages during one eager step,
tracked op by op with a dispatch mode (`method: "cpu-live-tensors"`), plus the parameters, buffers and
optimiser state that exist before the step. It leaves out the allocator's caching and library workspaces.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mpliver.errors import ConfigError
from mpliver.extras import nnunet_available
from mpliver.io.atomic import write_json_atomic
from mpliver.models import create_model, segmentation_loss
from mpliver.models.fusion.sam import fused_sam_mode, set_fused_sam
from mpliver.models.inference_copy import inference_model
from mpliver.runtime import resolve_device
from mpliver.training.run_info import environment, git_revision

# the nnU-Net reference is nnU-Net's own network where its extra is installed, the look-alike elsewhere
DEFAULT_MODELS = ("paper", "add", "single_phase", "nnunet2d_native" if nnunet_available() else "nnunet2d")
REFERENCE = "add"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# torch.compile modes; "reduce-overhead" adds CUDA graphs (fewer launches), "max-autotune" also tunes kernels
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. `width` overrides every model's width; `iters` timed rounds after `warmup` rounds."""

    models: tuple[str, ...] = DEFAULT_MODELS
    size: int = 128
    batch: int = 4
    width: float = 0.25
    device: str = "auto"
    dtype: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    fused_sam: bool = False
    fold_bn: bool = False
    channels_last: bool = False
    iters: int = 5
    warmup: int = 2
    train: bool = True
    infer: bool = True
    memory: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"bench: dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.size < 32 or self.size % 32:
            raise ConfigError(f"bench: size must be a positive multiple of 32, got {self.size}")
        if self.batch < 1 or self.iters < 1 or self.warmup < 0:
            raise ConfigError("bench: batch and iters must be >= 1 and warmup >= 0")
        if not self.models:
            raise ConfigError("bench: no models given")
        if self.device == "gpu" or self.device.startswith("gpu:"):  # a synonym for cuda
            object.__setattr__(self, "device", "cuda" + self.device[3:])
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"bench: device must be auto, cpu, cuda or gpu, got {self.device!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"bench: compile mode must be one of {COMPILE_MODES}, "
                              f"got {self.compile_mode!r}")


@dataclass
class ModelResult:
    """One model's figures; times in seconds per step/pass, throughputs in slices per second."""

    model: str
    params: int
    train_step_s: float | None = None
    train_slices_per_s: float | None = None
    infer_pass_s: float | None = None
    infer_slices_per_s: float | None = None
    train_peak_mib: float | None = None
    infer_peak_mib: float | None = None
    train_ratio: float | None = None
    infer_ratio: float | None = None
    train_times: list[float] = field(default_factory=list)
    infer_times: list[float] = field(default_factory=list)


class _Case:
    """One model with its optimiser, inputs, target and (optionally compiled) callable."""

    def __init__(self, name: str, cfg: BenchConfig, device: torch.device):
        self.name = name
        self.model = create_model(name, width=cfg.width).to(device)
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        n = max(1, self.model.config.num_phases)
        g = torch.Generator().manual_seed(cfg.seed)
        shape = (cfg.batch, self.model.config.in_channels, cfg.size, cfg.size)
        self.inputs = [torch.rand(shape, generator=g).to(device).contiguous(memory_format=fmt)
                       for _ in range(n)]
        self.target = (torch.rand(cfg.batch, cfg.size, cfg.size, generator=g) > 0.8).long().to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
        mode = None if cfg.compile_mode == "default" else cfg.compile_mode
        self.forward: Callable[..., dict[str, torch.Tensor]] = (
            torch.compile(self.model, mode=mode) if cfg.compile else self.model)
        # inference: the network as built (eval mode), or with `fold_bn` the copy `predict` runs (BN folded)
        self.infer_model = self.model
        self.infer_forward = self.forward
        if cfg.fold_bn:

            self.infer_model = inference_model(self.model.eval(), device, channels_last=cfg.channels_last)
            self.infer_forward = (torch.compile(self.infer_model, mode=mode) if cfg.compile
                                  else self.infer_model)
        self.params = sum(p.numel() for p in self.model.parameters())


def _autocast(device: torch.device, dtype: str) -> torch.autocast:
    if dtype == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(case: _Case, device: torch.device, dtype: str, forward: Callable | None = None) -> None:
    """Forward, loss, backward and SGD step (the loss in float32, as in training)."""
    case.model.train()
    case.optimizer.zero_grad(set_to_none=True)
    with _autocast(device, dtype):
        out = (forward or case.forward)(case.inputs)
    segmentation_loss(out, case.target).backward()
    case.optimizer.step()


def infer_pass(case: _Case, device: torch.device, dtype: str, forward: Callable | None = None) -> None:
    """One inference pass under `inference_mode`."""
    case.infer_model.eval()
    with torch.inference_mode(), _autocast(device, dtype):
        (forward or case.infer_forward)(case.inputs)["logits"]


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


class _LiveTensorPeak(TorchDispatchMode):
    """Peak total bytes of the tensor storages created inside the mode and still alive (CPU estimate).

    A storage counts from the op that creates it until its last tensor is freed (weakref finalizers; torch
    keeps a tensor's Python object alive while autograd still holds the tensor).
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.current -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            key = t.untyped_storage().data_ptr()
            if key == 0:
                continue
            if key not in self._refs:
                self._refs[key] = 0
                self._sizes[key] = t.untyped_storage().nbytes()
                self.current += self._sizes[key]
                self.peak = max(self.peak, self.current)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def _state_bytes(case: _Case) -> int:
    tensors = list(case.model.parameters()) + list(case.model.buffers())
    for state in case.optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_memory_mib(case: _Case, device: torch.device, dtype: str, mode: str) -> float:
    """Peak memory of one training step or inference pass, in MiB (see the module docstring for how)."""
    step = train_step if mode == "train" else infer_pass
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(case, device, dtype)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    static = _state_bytes(case)
    tracker = _LiveTensorPeak()
    with tracker:
        eager = case.model if mode == "train" else case.infer_model  # compiled kernels bypass the mode
        step(case, device, dtype, forward=eager)
    return (static + tracker.peak) / 2**20


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every model of `cfg` in interleaved rounds; returns the JSON-ready result."""
    device = resolve_device(cfg.device, what="bench: --device")
    say = progress or (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    before = fused_sam_mode()
    set_fused_sam("always" if cfg.fused_sam else "off")
    try:
        return _run(cfg, device, say)
    finally:
        set_fused_sam(before)


def _run(cfg: BenchConfig, device: torch.device, say: Callable[[str], None]) -> dict[str, Any]:
    cases = [_Case(name, cfg, device) for name in cfg.models]
    results = {c.name: ModelResult(c.name, c.params) for c in cases}
    modes = [m for m, on in (("train", cfg.train), ("infer", cfg.infer)) if on]
    steps = {"train": train_step, "infer": infer_pass}
    for r in range(cfg.warmup + cfg.iters):
        timed = r >= cfg.warmup
        say(f"round {r + 1}/{cfg.warmup + cfg.iters}" + ("" if timed else " (warm-up)"))
        k = r % len(cases)
        order = cases[k:] + cases[:k]  # rotate, so no model always runs first after the other mode
        for mode in modes:
            for case in order:
                t = _timed(lambda c=case, m=mode: steps[m](c, device, cfg.dtype), device)
                if timed:
                    getattr(results[case.name], f"{mode}_times").append(t)
    for case in cases:
        res = results[case.name]
        if res.train_times:
            res.train_step_s = statistics.median(res.train_times)
            res.train_slices_per_s = cfg.batch / res.train_step_s
        if res.infer_times:
            res.infer_pass_s = statistics.median(res.infer_times)
            res.infer_slices_per_s = cfg.batch / res.infer_pass_s
        if cfg.memory:
            say(f"memory: {case.name}")
            for mode in modes:
                setattr(res, f"{mode}_peak_mib", peak_memory_mib(case, device, cfg.dtype, mode))
    _add_ratios(list(results.values()))
    return {
        "config": dataclasses.asdict(cfg),
        "device": str(device),
        "device_name": _device_name(device),
        "environment": environment(device),
        "git": git_revision(),
        "memory_method": "cuda-max-memory-allocated" if device.type == "cuda" else "cpu-live-tensors",
        "reference": REFERENCE,
        "results": [dataclasses.asdict(results[c.name]) for c in cases],
    }


def _add_ratios(results: Sequence[ModelResult]) -> None:
    """Ratio of each model's throughput to the reference's: the median over rounds of the paired ratio
    t_ref / t_model, both timed in the same round, so that a slow spell of the machine cancels out."""
    ref = next((r for r in results if r.model == REFERENCE), None)
    if ref is None:
        return
    for r in results:
        for mode in ("train", "infer"):
            ours, theirs = getattr(r, f"{mode}_times"), getattr(ref, f"{mode}_times")
            if ours and len(ours) == len(theirs):
                paired = [t / o for t, o in zip(theirs, ours, strict=True)]
                setattr(r, f"{mode}_ratio", statistics.median(paired))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return str(environment(device).get("cpu"))


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write a `run_bench` result atomically as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path
