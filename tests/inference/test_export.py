"""`mpliver export`: ONNX and TorchScript files whose logits match PyTorch's, checked independently here."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from mpliver.cli import main
from mpliver.errors import ConfigError
from mpliver.inference.bundle import load_bundle
from mpliver.inference.export import ExportError, export_model

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _reference(bundle_path, inputs):
    model = load_bundle(bundle_path).tumor_model
    with torch.no_grad():
        return model([torch.from_numpy(x) for x in inputs])["logits"].numpy()


@pytest.mark.slow
def test_torchscript_matches_pytorch_on_a_new_input(bundle_path, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", "--model", str(bundle_path), "--format", "torchscript", "--out", str(out)]) == 0
    assert "parity" in capsys.readouterr().err
    scripted = torch.jit.load(str(out))
    rng = np.random.default_rng(5)
    inputs = [rng.uniform(0, 1, (3, 3, 64, 64)).astype(np.float32) for _ in range(2)]  # another batch size
    with torch.no_grad():
        got = scripted(*(torch.from_numpy(x) for x in inputs)).numpy()
    np.testing.assert_allclose(got, _reference(bundle_path, inputs), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason="onnx/onnxruntime not installed (pip install mpliver[export])")
def test_onnx_matches_pytorch_on_a_new_input(bundle_path, tmp_path):
    import onnxruntime as ort

    result = export_model(bundle_path, "onnx", tmp_path / "model.onnx")
    assert result.max_abs_diff <= 1e-4 and result.input_names == ["pv", "art"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pv", "art"]
    rng = np.random.default_rng(6)
    inputs = [rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32) for _ in range(2)]
    (got,) = session.run(["logits"], {"pv": inputs[0], "art": inputs[1]})
    np.testing.assert_allclose(got, _reference(bundle_path, inputs), atol=1e-4)


@pytest.mark.slow
def test_parity_failure_raises(bundle_path, tmp_path):
    with pytest.raises(ExportError, match="parity check failed"):
        export_model(bundle_path, "torchscript", tmp_path / "m.pt", tolerance=-1.0)


def test_missing_onnx_gives_the_install_hint(bundle_path, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ConfigError, match=r"pip install mpliver\[export\]"):
        export_model(bundle_path, "onnx", tmp_path / "m.onnx")


def test_unknown_format(bundle_path, tmp_path, capsys):
    args = ["export", "--model", str(bundle_path), "--format", "tflite", "--out", str(tmp_path / "m")]
    assert main(args) == 2
    assert "onnx, torchscript" in capsys.readouterr().err
