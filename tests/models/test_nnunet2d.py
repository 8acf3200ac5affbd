"""`nnunet2d`: nnU-Net's 8-stage 2D configuration, centre-slice input, padding to its geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpliver.extras import nnunet_available
from mpliver.models import create_model


@pytest.fixture(params=["nnunet2d", "nnunet2d_native"])
def name(request):
    """Every test runs on the look-alike and, with the nnU-Net extra, on nnU-Net's own network."""
    if request.param == "nnunet2d_native" and not nnunet_available():
        pytest.skip("the nnU-Net extra is not installed")
    return request.param


def _phases(size: int, batch: int = 1, n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, size, size, generator=g) for _ in range(n)]


def test_architecture_is_nnunets_2d_plan(name):
    model = create_model(name)
    convs = [m for m in model.encoders[0].modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[::2]] == [32, 64, 128, 256, 512, 512, 512, 512]
    assert len(convs) == 16  # two convs per stage
    assert [c.stride for c in convs[::2]] == [(1, 1)] + [(2, 2)] * 7  # strided-conv downsampling
    assert all(c.stride == (1, 1) and c.kernel_size == (3, 3) and c.bias is not None for c in convs[1::2])
    assert convs[0].in_channels == 2  # one centre slice per phase
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(norms) == len(acts) == 16 + 14 and all(n.affine for n in norms)
    assert all(a.negative_slope == 0.01 for a in acts)
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 7 and all(u.stride == (2, 2) and u.kernel_size == (2, 2) for u in ups)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_only_the_centre_slice_of_each_phase_is_used(name):
    model = create_model(name, width=0.125).eval()
    xs = _phases(64)
    changed = [x.clone() for x in xs]
    for x in changed:
        x[:, 0] = torch.rand_like(x[:, 0])
        x[:, 2] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(xs)["logits"], model(changed)["logits"])
        swapped = model([xs[1], xs[0]])["logits"]
    assert not torch.allclose(swapped, model(xs)["logits"])  # the phases are distinct input channels


def test_small_inputs_are_zero_padded_to_the_8_stage_geometry_and_cropped(name):
    torch.manual_seed(0)
    model = create_model(name, width=0.125).eval()
    xs = _phases(64, batch=2)
    centre = torch.stack([xs[0][:, 1], xs[1][:, 1]], dim=1)
    padded = F.pad(centre, (96, 96, 96, 96))  # 64 -> 256, centred: the smallest 8-stage input
    shapes = []
    hook = model.encoders[0].stages[-1].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        out = model(xs)["logits"]
        ref = model._logits(padded)[..., 96:160, 96:160]
    hook.remove()
    assert out.shape == (2, 2, 64, 64)
    torch.testing.assert_close(out, ref)
    assert shapes[0][-2:] == (2, 2)  # bottleneck: 256 / 128


def test_with_the_extra_it_is_nnunets_own_plain_conv_unet(name):
    pytest.importorskip("dynamic_network_architectures", reason="the nnU-Net extra is not installed")
    if name == "nnunet2d":
        pytest.skip("the look-alike is not nnU-Net's network")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    model = create_model(name)
    assert model.implementation == "dynamic_network_architectures.PlainConvUNet"
    # nnU-Net's own build path from a plan's arch_kwargs (as nnU-Net writes them for a 512x512 2d CT plan)
    arch = {"n_stages": 8, "features_per_stage": [32, 64, 128, 256, 512, 512, 512, 512],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * 8,
            "strides": [[1, 1]] + [[2, 2]] * 7, "n_conv_per_stage": [2] * 8,
            "n_conv_per_stage_decoder": [2] * 7,
            "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    ref = get_network_from_plans("dynamic_network_architectures.architectures.unet.PlainConvUNet", arch,
                                 ["conv_op", "norm_op", "dropout_op", "nonlin"], 2, 2, deep_supervision=False)
    ours = {k.removeprefix("net."): v.shape for k, v in model.state_dict().items()}
    last_head = f"decoder.seg_layers.{len(ref.decoder.seg_layers) - 1}."
    # the same tensors, less the deep-supervision heads nnU-Net leaves unused without deep supervision
    assert ours == {k: v.shape for k, v in ref.state_dict().items()
                    if not k.startswith("decoder.seg_layers.") or k.startswith(last_head)}
    model.eval()
    missing = ref.load_state_dict({k.removeprefix("net."): v for k, v in model.state_dict().items()},
                                  strict=False).missing_keys
    assert all(k.startswith("decoder.seg_layers.") and not k.startswith(last_head) for k in missing)
    x = torch.rand(1, 2, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), ref.eval()(x))  # the same function as nnU-Net's network


def test_nnunet2d_is_the_look_alike_whatever_is_installed():
    # a checkpoint names the network it holds: the same name builds the same parameters on every machine
    model = create_model("nnunet2d", width=0.125)
    assert model.implementation == "mpliver look-alike"
    assert all(k.split(".")[0] in {"encoder", "decoder", "classifier"} for k in model.state_dict())


def test_native_without_the_extra_is_one_line(monkeypatch):
    from mpliver import extras

    monkeypatch.setattr(extras, "nnunet_available", lambda: False)
    with pytest.raises(extras.MissingExtraError, match=r"nnunet2d_native needs nnU-Net v2.*pip install") \
            as err:
        create_model("nnunet2d_native", width=0.125)
    assert "\n" not in str(err.value)
