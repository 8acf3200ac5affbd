"""Training checkpoints: written atomically (temp file + fsync + `os.replace`), loaded with one-line errors.

A checkpoint is a dict holding `model`, `optimizer`, `scheduler`, `epoch` (the number of completed epochs),
`rng` (torch, CUDA, numpy, python and sampler states), `best_metric`, `config` and `format`. Every value is a
tensor or a plain Python container, so files load with `torch.load(weights_only=True)`: opening a checkpoint
never executes pickled code. A run keeps two files, `last.pt` and `best.pt`. A process killed in the middle of
a write leaves the previous file intact and at most a stale `.NAME.tmp-PID-*` beside it, removed by the next
save (`mpliver.io.atomic`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpliver.errors import MpliverError
from mpliver.io.atomic import atomic_path

FORMAT = "mpliver-checkpoint-1"
REQUIRED_KEYS = ("format", "model", "epoch")
LAST = "last.pt"
BEST = "best.pt"


class CheckpointError(MpliverError):
    """A checkpoint that is missing, truncated, corrupt or not an mpliver checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically; the previous file stays loadable until the new one is complete."""
    path = Path(path)
    _remove_stale_temporaries(path)
    state = {"format": FORMAT, **state}
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; a `CheckpointError` if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint ({reason[:200]})", path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"not an mpliver checkpoint (expected format '{FORMAT}')", path)
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}", path)
    return state


def state_is_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor of a state dict is finite (no NaN/inf weights are saved)."""
    return all(
        bool(torch.isfinite(t).all())
        for t in state_dict.values()
        if torch.is_tensor(t) and t.is_floating_point()
    )


# ---- RNG states -------------------------------------------------------------------------------------------


def capture_rng_state(sampler_state: Any = None) -> dict[str, Any]:
    """All random-number-generator states, as tensors and plain containers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [version, list(internal), gauss],
        "sampler": sampler_state,
    }


def restore_rng_state(rng: dict[str, Any]) -> Any:
    """Restore the states captured by `capture_rng_state`; return the sampler state for the caller."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    return rng.get("sampler")


# ---- helpers ----------------------------------------------------------------------------------------------


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temp files `.NAME.*.tmp` of earlier mpliver versions' writers killed mid-write (today's
    PID-tagged temp files are removed by `mpliver.io.atomic` once their writer is dead)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass
