"""Loading a torchvision checkpoint (random values, exactly torchvision's key set) into the streams."""

from __future__ import annotations

import json

import pytest
import torch

from mpliver.errors import ConfigError, InputError
from mpliver.models import create_model


def _random_state_dict(shared_data, name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    table = json.loads((shared_data / "backbone" / "torchvision_backbone_keys.json").read_text())
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in table[name].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)))
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


@pytest.fixture(scope="module")
def resnext_state(shared_data):
    return _random_state_dict(shared_data, "resnext50_32x4d")


@pytest.mark.slow
def test_loads_into_both_streams(resnext_state, tmp_path):
    model = create_model("paper")
    model.load_pretrained_backbone(resnext_state)  # fc.* present in the checkpoint, ignored
    for enc in model.encoders:
        got = enc.state_dict()
        assert set(got) == {k for k in resnext_state if not k.startswith("fc.")}
        for key, value in got.items():
            assert torch.equal(value, resnext_state[key]), key
    # values land where torchvision keeps them
    assert torch.equal(model.encoders[1].layer3[4].conv2.weight, resnext_state["layer3.4.conv2.weight"])
    assert torch.equal(model.encoders[0].layer1[0].downsample[1].running_var,
                       resnext_state["layer1.0.downsample.1.running_var"])
    # the same from a file, after a change to the values
    path = tmp_path / "resnext50_32x4d.pth"
    torch.save({k: v + 1 for k, v in resnext_state.items()}, path)
    model.load_pretrained_backbone(path)
    assert torch.equal(model.encoders[0].conv1.weight, resnext_state["conv1.weight"] + 1)
    # a bad checkpoint: one key missing, or the other architecture's shapes
    broken = dict(resnext_state)
    del broken["layer4.2.bn3.bias"]
    with pytest.raises(ConfigError, match="1 missing key"):
        model.load_pretrained_backbone(broken)
    with pytest.raises(InputError, match="not found"):
        model.load_pretrained_backbone(tmp_path / "absent.pth")


@pytest.mark.slow
def test_resnet50_checkpoint_and_wrong_architecture(shared_data, resnext_state):
    state = _random_state_dict(shared_data, "resnet50", seed=1)
    model = create_model("pa_resseg")  # two ResNet-50 streams
    model.load_pretrained_backbone(state)
    assert all(torch.equal(e.layer2[1].conv2.weight, state["layer2.1.conv2.weight"]) for e in model.encoders)
    with pytest.raises(ConfigError, match="shape mismatch.*resnet50 checkpoint"):
        model.load_pretrained_backbone(resnext_state)


@pytest.mark.slow
def test_ilf_tiles_and_halves_conv1(resnext_state):
    model = create_model("ilf")
    model.load_pretrained_backbone(resnext_state)
    w = resnext_state["conv1.weight"]
    conv1 = model.encoders[0].conv1.weight
    assert conv1.shape == (64, 6, 7, 7)
    torch.testing.assert_close(conv1, torch.cat([w, w], dim=1) / 2, rtol=0, atol=0)
    # two identical phases give the ImageNet response of one
    x = torch.rand(1, 3, 32, 32)
    ref = torch.nn.functional.conv2d(x, w, stride=2, padding=3)
    torch.testing.assert_close(model.encoders[0].conv1(torch.cat([x, x], 1)), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.encoders[0].layer4[2].conv3.weight, resnext_state["layer4.2.conv3.weight"])


def test_refused_where_the_shapes_cannot_match(resnext_state):
    with pytest.raises(ConfigError, match="width=1"):
        create_model("paper", width=0.25, blocks=(1, 1, 1, 1)).load_pretrained_backbone(resnext_state)
    with pytest.raises(ConfigError, match="default blocks"):
        model = create_model("add", width=1.0, blocks=(1, 1, 1, 1), urim=False)
        model.load_pretrained_backbone(resnext_state)
    with pytest.raises(ConfigError, match="resnext50/resnet50 backbones only"):
        create_model("paper", backbone="unet", width=0.25).load_pretrained_backbone(resnext_state)
    with pytest.raises(InputError, match="mapping of parameter names"):
        create_model("single_phase", urim=False).load_pretrained_backbone({"conv1.weight": [1, 2, 3]})
