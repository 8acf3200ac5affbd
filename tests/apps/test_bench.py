"""`mpliver bench` smoke test: runs on the CPU at a tiny size, prints the ratio table, writes valid JSON.

No timing assertions (the machine is shared); the figures are checked for consistency only.
"""

from __future__ import annotations

import json

import pytest
import torch

from mpliver.apps.bench import DEFAULT_MODELS, BenchConfig, _LiveTensorPeak
from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.extras import nnunet_available


@pytest.mark.slow
def test_bench_cli_prints_ratio_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--size", "64", "--batch", "2", "--width", "0.125", "--iters", "1",
               "--warmup", "0", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in (*DEFAULT_MODELS, "train / add", "infer / add"):
        assert name in printed
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["reference"] == "add"
    assert data["config"]["size"] == 64 and data["config"]["batch"] == 2
    assert data["environment"]["torch"] == torch.__version__ and "python" in data["environment"]
    assert set(data["git"]) == {"commit", "dirty"}
    rows = {r["model"]: r for r in data["results"]}
    assert set(rows) == {"paper", "add", "single_phase", DEFAULT_MODELS[-1]}
    assert DEFAULT_MODELS[-1] == ("nnunet2d_native" if nnunet_available() else "nnunet2d")
    assert rows["add"]["train_ratio"] == 1.0 and rows["add"]["infer_ratio"] == 1.0
    for r in rows.values():
        assert r["params"] > 0 and len(r["train_times"]) == 1 and len(r["infer_times"]) == 1
        assert r["train_slices_per_s"] == pytest.approx(2 / r["train_step_s"])
        # one round: the paired ratio is the ratio of the two medians
        assert r["infer_ratio"] == pytest.approx(r["infer_slices_per_s"] / rows["add"]["infer_slices_per_s"])
        assert r["train_ratio"] == pytest.approx(rows["add"]["train_step_s"] / r["train_step_s"])
        # memory includes at least the float32 parameters; training also holds grads and activations
        assert r["infer_peak_mib"] * 2**20 > 4 * r["params"]
        assert r["train_peak_mib"] > r["infer_peak_mib"]


def test_live_tensor_peak_counts_a_known_allocation_pattern():
    with _LiveTensorPeak() as tracker:
        a = torch.empty(1000, dtype=torch.float32)  # 4000 B
        b = torch.empty(500, dtype=torch.float64)  # 4000 B -> peak 8000
        del a
        c = torch.empty(250, dtype=torch.float32)  # 1000 B: current 5000, peak stays 8000
        view = b[:10]  # same storage: no new bytes
        del b
        assert tracker.current == 5000  # b's storage is alive through the view
        del view, c
    assert tracker.peak == 8000 and tracker.current == 0


def test_bad_options_are_config_errors(capsys):
    with pytest.raises(ConfigError, match="multiple of 32"):
        BenchConfig(size=50)
    with pytest.raises(ConfigError, match="dtype"):
        BenchConfig(dtype="fp16")
    with pytest.raises(ConfigError, match="compile mode"):
        BenchConfig(compile_mode="fastest")
    assert main(["bench", "--device", "cpu", "--models", "nope", "--size", "64", "--batch", "1"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_fold_bn_times_the_inference_copy_that_predict_runs(tmp_path):
    """`--fold-bn`: inference runs on a BN-folded copy (no BatchNorm left), training on the model as built;
    the inference peak memory is measured on that copy."""
    from torch import nn

    from mpliver.apps.bench import BenchConfig, _Case, run_bench

    cfg = BenchConfig(models=("paper", "add"), size=64, batch=1, width=0.125, iters=1, warmup=0,
                      device="cpu", fold_bn=True)
    case = _Case("paper", cfg, torch.device("cpu"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in case.infer_model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in case.model.modules())
    result = run_bench(cfg)
    assert result["config"]["fold_bn"] is True
    for r in result["results"]:
        assert r["infer_peak_mib"] > 0 and len(r["infer_times"]) == 1
