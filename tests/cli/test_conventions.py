"""Command-line conventions of issue 12 for every command: -h and --help, --version, flags shown as flags
(never a <bool> value), -i for --input, --device gpu as a synonym for cuda."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mpliver
from mpliver.cli import app, main

COMMANDS = sorted(c.name for c in app.registered_commands)


def test_every_command_is_listed():
    assert {"predict", "evaluate", "train", "bundle", "phantom", "preprocess"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_works_and_shows_booleans_as_flags(command, flag, capsys):
    assert main([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: mpliver {command}") and "<bool>" not in out and "BOOLEAN" not in out


def test_root_help_and_version(capsys):
    assert main(["-h"]) == 0
    assert "Commands:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mpliver {mpliver.__version__}"


def test_predict_help_names_the_issue_12_options(capsys):
    assert main(["predict", "-h"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--tta / --no-tta", "--overwrite / --no-overwrite", "-i, --input", "--save-probabilities",
                 "--strict", "--split", "--cases", "-m, --model BUNDLE", "torchrun --standalone",
                 "--nproc_per_node", "fold ensemble"):
        assert text in out, text


def test_device_gpu_is_cuda_everywhere():
    """`--device gpu` (and train.device=gpu, bench --device gpu) reach the same device as cuda."""
    from mpliver.apps.bench import BenchConfig
    from mpliver.errors import ConfigError
    from mpliver.runtime import resolve_device
    from mpliver.training.config import load_config

    assert BenchConfig(device="gpu").device == "cuda" and BenchConfig(device="gpu:1").device == "cuda:1"
    assert load_config("cpu-small", ["train.device=gpu"]).train.device == "gpu"  # accepted by the config
    if torch.cuda.is_available():
        assert resolve_device("gpu") == resolve_device("cuda")
    else:
        with pytest.raises(ConfigError, match="--device cuda asked for, but torch sees no CUDA device"):
            resolve_device("gpu")
    with pytest.raises(ConfigError, match="must be auto, cpu, cuda or gpu, got 'tpu'"):
        resolve_device("tpu")


def test_device_gpu_from_the_command_line(tmp_path, capsys):
    """On a machine without CUDA, --device gpu fails exactly like --device cuda (one line, exit 2)."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA message cannot be shown")
    results = []
    for device in ("gpu", "cuda"):
        rc = main(["bench", "--device", device, "--models", "add", "--out", str(tmp_path / "b.json")])
        results.append((rc, capsys.readouterr().err.strip().splitlines()[-1]))
    assert results[0] == results[1] and results[0][0] == 2 and "no CUDA device" in results[0][1]


@pytest.mark.slow
def test_results_on_stdout_progress_on_stderr(tmp_path, capsys):
    """phantom, preprocess and evaluate: stdout holds the result lines only (no progress bar), so that
    `mpliver ... > result.txt` captures the result."""
    ds = tmp_path / "ds"
    assert main(["phantom", str(ds), "--cases", "2", "--shape", "32,32,8", "--spacing", "10,10,20",
                 "--no-previews", "--workers", "1", "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 2 synthetic cases") and "━" not in out and "phantom" not in out
    assert main(["preprocess", str(ds), "--out", str(tmp_path / "cache"), "--input-size", "32"]) == 0
    captured = capsys.readouterr()
    assert "━" not in captured.out and "case(s) built" in captured.out
    labels = ds / "labelsTr"
    assert main(["evaluate", str(labels), str(labels), "--out", str(tmp_path / "ev")]) == 0
    captured = capsys.readouterr()
    assert "DPC" in captured.out and "evaluating" not in captured.out


def test_the_cli_starts_without_the_heavy_libraries():
    """`mpliver --help` imports every command module: none may pull in torch, numpy or the readers at import
    (their imports are lazy, inside the commands)."""
    heavy = "('torch', 'numpy', 'scipy', 'pydicom', 'nibabel', 'SimpleITK', 'monai', 'matplotlib')"
    code = f"import sys, mpliver.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(mpliver.__file__).parents[1])})
    assert out.stdout.strip() == "[]"
