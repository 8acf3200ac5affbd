"""`predict --precision`: 'auto' keeps fp32 on the CPU, 'bf16' runs the network under bf16 autocast on the CPU
too (issue 16 item 2: faster on CPUs with bf16 instructions, outside the fp32 parity tolerance, so opt-in)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpliver.errors import ConfigError
from mpliver.inference.predict import _network, check_precision


class _ConvNet(torch.nn.Module):
    """A 1x1 convolution of phase 0 as the tumour logits; records the dtype the convolution computed in."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, phases):
        out = self.conv(phases[0])
        self.dtypes.append(out.dtype)
        return {"logits": out}


@pytest.mark.parametrize(("precision", "dtype"), [("auto", torch.float32), ("fp32", torch.float32),
                                                  ("bf16", torch.bfloat16)])
def test_precision_chooses_the_arithmetic_of_the_network_on_the_cpu(precision, dtype):
    stacks = np.random.default_rng(0).uniform(0, 1, (3, 2, 3, 8, 8)).astype(np.float32)
    net = _ConvNet()
    got = _network(net, stacks, 2, torch.device("cpu"), tta=False, precision=precision)
    assert set(net.dtypes) == {dtype}
    with torch.no_grad():  # the same convolution in float64, by hand
        x = torch.from_numpy(stacks[:, 0]).double()
        logits = torch.nn.functional.conv2d(x, net.conv.weight.double(), net.conv.bias.double())
        expected = torch.softmax(logits, dim=1)[:, 1].numpy()
    error = np.abs(got - expected).max()
    assert got.dtype == np.float32
    if dtype == torch.float32:
        assert error < 1e-6
    else:  # bf16 keeps 8 bits of mantissa: close, not equal
        assert 1e-6 < error < 2e-2


def test_an_unknown_precision_is_one_line():
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        check_precision("fp16")
