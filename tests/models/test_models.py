"""Every registered model: forward + backward at 64x64, gradients into every stream; config, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpliver.errors import ConfigError, InputError
from mpliver.extras import nnunet_available
from mpliver.models import ModelConfig, build_model, create_model, list_models, segmentation_loss

# nnunet2d_native needs the nnU-Net extra (not installed in CI): the other models build everywhere
BUILDABLE = [n for n in list_models() if n != "nnunet2d_native" or nnunet_available()]

SINGLE_INPUT = {"single_phase", "liver_resunet"}
WITH_URIM = {"paper", "sam", "add", "mw", "pa", "ilf", "dlf", "single_phase"}
REQUIRED = {"paper", "sam", "add", "mw", "pa", "ilf", "dlf", "single_phase", "mc_fcn", "mw_unet", "pa_resseg",
            "liver_resunet"}


def _phases(n: int, size: int = 64, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, size, size, generator=g) for _ in range(n)]


def _first_conv(encoder: nn.Module) -> nn.Conv2d:
    return next(m for m in encoder.modules() if isinstance(m, nn.Conv2d))


def test_required_names_are_registered():
    assert REQUIRED <= set(list_models())


@pytest.mark.parametrize("name", BUILDABLE)
def test_forward_backward_reaches_every_stream(name):
    torch.manual_seed(0)
    model = create_model(name, width=0.25)
    n = 1 if name in SINGLE_INPUT else 2
    out = model(_phases(n))
    assert out["logits"].shape == (2, 2, 64, 64)
    has_urim = name in WITH_URIM
    assert set(out) == ({"logits", "initial", "confidence"} if has_urim else {"logits"})
    if has_urim:
        assert out["initial"].shape == (2, 2, 64, 64)
        assert out["confidence"].shape == (2, 1, 16, 16)
        assert float(out["confidence"].min()) >= 0 and float(out["confidence"].max()) <= 1
    target = torch.randint(0, 2, (2, 64, 64))
    segmentation_loss(out, target).backward()
    encoders = list(model.encoders)
    assert len(encoders) == model.config.num_streams
    for i, enc in enumerate(encoders):
        grad = _first_conv(enc).weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"{name}: stream {i} gets no gradient"
    unused = [k for k, p in model.named_parameters() if p.grad is None]
    assert not unused, f"{name}: parameters without gradient (DDP needs find_unused_parameters): {unused}"


@pytest.mark.parametrize("backbone", ["resnet50", "unet"])
def test_other_backbones_build_and_run(backbone):
    model = create_model("paper", width=0.25, backbone=backbone)
    assert model.config.backbone == backbone
    out = model(_phases(2))
    assert out["logits"].shape == (2, 2, 64, 64)
    # the decoder (and so URIM) runs at B2's resolution: stride 4 for ResNets, 2 for the U-Net encoder
    assert out["confidence"].shape[-1] == (32 if backbone == "unet" else 16)
    segmentation_loss(out, torch.zeros(2, 64, 64, dtype=torch.long)).backward()
    assert all(_first_conv(e).weight.grad.abs().sum() > 0 for e in model.encoders)


@pytest.mark.parametrize("name", ["paper", "mw", "pa", "add", "dlf", "ilf", "mc_fcn", "mw_unet", "pa_resseg"])
def test_three_phases(name):
    model = create_model(name, width=0.25, num_phases=3, blocks=None if name == "mw_unet" else (1, 1, 1, 1))
    out = model(_phases(3, batch=1))
    assert out["logits"].shape == (1, 2, 64, 64)
    assert len(model.encoders) == (1 if name == "ilf" else 3)


def test_shared_encoder_is_one_stream_for_both_phases():
    model = create_model("paper", width=0.25, blocks=(1, 1, 1, 1), shared_encoder=True)
    assert len(model.encoders) == 1
    separate = create_model("paper", width=0.25, blocks=(1, 1, 1, 1))
    n_enc = sum(p.numel() for p in model.encoders[0].parameters())
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(separate) - total(model) == n_enc
    assert model(_phases(2))["logits"].shape == (2, 2, 64, 64)


def test_width_and_blocks_shrink_the_model():
    small = create_model("add", width=0.25, blocks=(1, 1, 1, 1), urim=False)
    enc = small.encoders[0]
    assert enc.stage_channels == (64, 128, 256, 512)
    assert [len(getattr(enc, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert small.decoders[0].channels == 32  # 128 scaled by the width
    assert small.urim is None


def test_full_width_paper_parameter_count():
    model = create_model("paper")
    streams = sum(p.numel() for p in model.encoders.parameters())
    assert round(streams / 1e6, 1) == 46.0  # two ResNeXt-50 (32x4d) streams without fc
    assert model.config.width == 1.0 and model.decoders[0].channels == 128


def test_unknown_names_and_overrides_are_refused():
    with pytest.raises(ConfigError, match="valid: .*paper"):
        create_model("nope")
    with pytest.raises(ConfigError, match="unknown override.*valid: .*width"):
        create_model("paper", widht=0.5)
    with pytest.raises(ConfigError, match="backbone"):
        create_model("paper", backbone="vgg16")
    with pytest.raises(ConfigError, match="num_phases must be >= 2"):
        create_model("sam", num_phases=1)
    with pytest.raises(ConfigError, match="num_phases must be 1"):
        create_model("single_phase", num_phases=2)
    with pytest.raises(ConfigError, match="no URIM"):
        create_model("mc_fcn", urim=True)
    with pytest.raises(ConfigError, match="backbone must be 'unet'"):
        create_model("mw_unet", backbone="resnet50")
    with pytest.raises(ConfigError, match="blocks"):
        create_model("paper", blocks=(1, 1, 1))
    with pytest.raises(ConfigError, match="width"):
        create_model("paper", width=0)
    with pytest.raises(ConfigError, match="unknown override"):
        create_model("paper", fusion="add")  # the fusion is what the name means


def test_config_round_trip_rebuilds_the_same_model():
    model = create_model("dlf", width=0.25, blocks=(1, 2, 1, 1), urim=False)
    data = model.config.to_dict()
    assert data["name"] == "dlf" and data["blocks"] == [1, 2, 1, 1]
    rebuilt = build_model(ModelConfig.from_dict(data))
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    model.eval(), rebuilt.eval()
    x = _phases(2, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], rebuilt(x)["logits"])
    with pytest.raises(ConfigError, match="unknown model config key"):
        ModelConfig.from_dict({**data, "colour": "red"})


def test_input_contract_is_checked():
    model = create_model("paper", width=0.25, blocks=(1, 1, 1, 1))
    with pytest.raises(InputError, match="takes 2 phases"):
        model(_phases(1))
    with pytest.raises(InputError, match="multiple of 32"):
        model(_phases(2, size=48))
    with pytest.raises(InputError, match="sequence of tensors"):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model([torch.rand(2, 1, 64, 64)] * 2)
    with pytest.raises(InputError, match="phase 1 has shape"):
        model([torch.rand(2, 3, 64, 64), torch.rand(2, 3, 96, 64)])


def test_single_input_models_use_pv_only():
    model = create_model("single_phase", width=0.25, blocks=(1, 1, 1, 1)).eval()
    pv, art = _phases(2, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(model([pv])["logits"], model([pv, art])["logits"])
        torch.testing.assert_close(model([pv])["logits"], model([pv, torch.zeros_like(art)])["logits"])


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = create_model("paper", width=0.25, blocks=(1, 1, 1, 1)).to(memory_format=torch.channels_last)
    xs = [x.to(memory_format=torch.channels_last) for x in _phases(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(xs)
        loss = segmentation_loss(out, torch.randint(0, 2, (2, 64, 64)))
    assert out["logits"].dtype == torch.bfloat16 and out["confidence"].dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert all(_first_conv(e).weight.grad.abs().sum() > 0 for e in model.encoders)
    # the float32 run agrees with the bf16 one to bf16 accuracy
    model.eval()
    with torch.no_grad():
        ref = model(xs)["logits"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(xs)["logits"].float()
    assert (low - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
