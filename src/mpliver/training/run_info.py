"""Run-folder metadata: what produced a result (config, environment, git revision, seed), at run start.

Reproducing a number needs more than the config: the library versions, the device and the code revision.
`write_run_info` stores them as `run_info.json` beside `config.yaml` in every run folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpliver._version import __version__
from mpliver.errors import InputError
from mpliver.io.atomic import write_json_atomic

RUN_INFO = "run_info.json"
CONFIG_YAML = "config.yaml"


def git_revision(folder: str | Path | None = None) -> dict[str, Any]:
    """`{"commit": sha or "unknown", "dirty": bool or None}` for the git checkout holding `folder`.

    The default folder is mpliver's own source, so the revision is that of the code that ran, not of the
    current directory. Outside a git checkout (an installed wheel) the commit is "unknown".
    """
    cwd = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(status.strip())}


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """Versions and hardware: python, torch, numpy, mpliver, platform, CPU and (if used) GPU name."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mpliver": __version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "gpu": None,
        "argv": list(sys.argv),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def write_run_info(
    run_dir: str | Path,
    config: Any,
    seed: int,
    device: torch.device | str | None = None,
    extra: dict[str, Any] | None = None,
    name: str = RUN_INFO,
) -> dict[str, Any]:
    """Write `config.yaml` (the resolved config) and `name` (run_info.json) in `run_dir`; return the metadata.

    `config` is an `mpliver.training.config.Config` (anything with `save(path)` and `to_dict()`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_YAML)
    info = {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": int(seed),
        "git": git_revision(),
        "environment": environment(device),
        "config": config.to_dict(),
        **(extra or {}),
    }
    write_json_atomic(run_dir / name, info)
    return info


def read_run_info(run_dir: str | Path, name: str = RUN_INFO) -> dict[str, Any]:
    """The run_info.json of a run folder: {} when there is none (a run written before it existed); an
    unreadable one is an InputError naming the file."""
    path = Path(run_dir) / name
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable run metadata ({type(exc).__name__}); remove it or train the run again",
                         path) from None
    if not isinstance(info, dict):
        raise InputError("run metadata is not a JSON object; remove it or train the run again", path)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
