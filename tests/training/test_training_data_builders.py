"""Config -> model and loss: the registry's errors surface as ConfigErrors; the optional foreground weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpliver.errors import ConfigError
from mpliver.training.config import load_config
from mpliver.training.data import build_loss, build_model


def test_build_model_uses_name_and_overrides():
    model = build_model(load_config("cpu-small", ["model.name=single_phase", "model.urim=false"]))
    assert model.config.name == "single_phase" and model.config.width == 0.25
    with pytest.raises(ConfigError, match="widht"):
        build_model(load_config("cpu-small", ["model.widht=0.5"]))
    with pytest.raises(ConfigError, match="nope"):
        build_model(load_config("cpu-small", ["model.name=nope"]))


def _manual_ce(logits: torch.Tensor, target: torch.Tensor, w: tuple[float, float]) -> float:
    """Weighted cross-entropy in float64 numpy: sum_i w[y_i] * -log softmax_i[y_i] / sum_i w[y_i]."""
    z = logits.double().numpy().transpose(0, 2, 3, 1).reshape(-1, 2)
    y = target.numpy().reshape(-1)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    wy = np.asarray(w)[y]
    return float((wy * -logp[np.arange(len(y)), y]).sum() / wy.sum())


@pytest.mark.parametrize("fg_weight", [1.0, 5.0])
def test_loss_is_init_plus_final_ce_with_optional_foreground_weight(fg_weight):
    torch.manual_seed(0)
    outputs = {"logits": torch.randn(2, 2, 5, 5), "initial": torch.randn(2, 2, 5, 5)}
    target = torch.randint(0, 2, (2, 5, 5))
    loss = build_loss(load_config("cpu-small", [f"train.fg_weight={fg_weight}"]))(outputs, target)
    expected = sum(_manual_ce(outputs[k], target, (1.0, fg_weight)) for k in ("logits", "initial"))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
