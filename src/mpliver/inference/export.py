"""`mpliver export`: the bundle's tumour network as ONNX or TorchScript, with a parity check.

The exported graph takes one input per phase (named after the bundle's phases, lower case: `pv`, `art`, ...),
each (N, 3, H, W) float32 windowed and liver-masked slices at the bundle's input size, and returns the final
logits (N, 2, H, W); the batch size is dynamic. Pre- and post-processing stay in mpliver (`predict`).
After export the same random input goes through PyTorch and through the exported model (onnxruntime, or the
TorchScript module), and their fp32 logits must agree within `tolerance` (1e-4), else `ExportError`.
ONNX needs the optional extra: `pip install mpliver[export]` (onnx, onnxruntime).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mpliver.errors import ConfigError, MpliverError
from mpliver.inference.bundle import Bundle, load_bundle
from mpliver.io.atomic import atomic_path, check_writable

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4
OPSET = 17


class ExportError(MpliverError):
    """An export that failed or whose output does not match PyTorch's."""


class LogitsModel(nn.Module):
    """The tumour network with phases as separate inputs and the final logits as the only output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *phases: torch.Tensor) -> torch.Tensor:
        return self.model(list(phases))["logits"]


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    input_names: list[str]


def _register_onnx_symbolics(opset: int) -> None:
    """ONNX forms of ops the TorchScript-based exporter lacks: `addcdiv` (URIM's LC-Conv), a + v * t1 / t2."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper  # lazy: the exporter, only to export

    @symbolic_helper.parse_args("v", "v", "v", "f")
    def addcdiv(g, base, t1, t2, value=1.0):
        quotient = g.op("Div", t1, t2)
        if value != 1.0:
            scale = g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32))
            quotient = g.op("Mul", quotient, scale)
        return g.op("Add", base, quotient)

    register_custom_op_symbolic("aten::addcdiv", addcdiv, opset)


def _require_onnx():
    try:
        import onnx  # noqa: F401  # lazy: optional extra mpliver[export]
        import onnxruntime  # lazy: optional extra mpliver[export]
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install mpliver[export]") from None
    return onnxruntime


def export_model(model: Bundle | str | Path, fmt: str, out: str | Path, batch: int = 2,
                 input_size: int | None = None, tolerance: float = TOLERANCE, seed: int = 0) -> ExportResult:
    """Export the bundle's tumour network to `out` and check parity on a random input (see the module)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    ort = _require_onnx() if fmt == "onnx" else None
    check_writable(out, "file")
    bundle = model if isinstance(model, Bundle) else load_bundle(model)
    net = LogitsModel(bundle.tumor_model.float().cpu()).eval()
    cfg = bundle.model_config
    n_inputs = 1 if cfg.input_phases == 1 else len(bundle.phases)
    names = [p.lower() for p in bundle.phases[:n_inputs]]
    size = int(input_size or bundle.preprocess.input_size)
    generator = torch.Generator().manual_seed(seed)
    inputs = tuple(torch.rand(batch, cfg.in_channels, size, size, generator=generator) for _ in names)
    with torch.no_grad():
        reference = net(*inputs).numpy()
    out = Path(out)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the input checks, constant in the graph
        try:
            if fmt == "torchscript":
                with torch.no_grad():
                    traced = torch.jit.trace(net, inputs, check_trace=False)
                traced.save(str(tmp))
            else:
                _register_onnx_symbolics(OPSET)
                torch.onnx.export(
                    net, inputs, str(tmp), input_names=names, output_names=["logits"],
                    dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
                    opset_version=OPSET, dynamo=False)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{fmt} export failed ({type(exc).__name__}: {reason})", out) from None
    if fmt == "torchscript":
        loaded = torch.jit.load(str(out))
        with torch.no_grad():
            exported = loaded(*inputs).numpy()
    else:
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        exported = session.run(["logits"], {n: x.numpy() for n, x in zip(names, inputs, strict=True)})[0]
    diff = float(np.max(np.abs(exported - reference)))
    if not diff <= tolerance:
        raise ExportError(f"parity check failed: exported logits differ from PyTorch's by {diff:.3g} "
                          f"(tolerance {tolerance:g})", out)
    return ExportResult(out, fmt, diff, tolerance, names)
