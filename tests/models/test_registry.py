"""The registry: model files register themselves; a new baseline is one new file (here a temporary module
outside the package) that builds through `create_model` and round-trips through a bundle."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch

from mpliver.data.config import PreprocessConfig
from mpliver.errors import ConfigError
from mpliver.inference.bundle import load_bundle, save_bundle
from mpliver.models import (
    ModelConfig,
    SegmentationModel,
    build_model,
    create_model,
    list_archs,
    list_models,
    register_arch,
    register_model,
    registry,
)

NAMES = {"paper", "sam", "add", "mw", "pa", "ilf", "dlf", "single_phase", "mc_fcn", "mw_unet", "pa_resseg",
         "liver_resunet", "nnunet2d", "nnunet2d_native"}
ARCHS = {"multiphase", "mc_fcn", "mw_unet", "pa_resseg", "liver_resunet", "nnunet2d"}
PV_ONLY_NAMES = {"single_phase", "liver_resunet"}

# A complete baseline in one file: the network, its own constraint, its registered default.
TINY_BASELINE = '''
"""A tiny baseline: one 3x3 conv on the PV phase."""
from torch import nn

from mpliver.models import ModelConfig, SegmentationModel, config_error, register_arch, register_model


@register_arch("tiny_conv")
class TinyConv(SegmentationModel):
    def __init__(self, config):
        super().__init__(config)
        self.conv = nn.Conv2d(config.in_channels, config.num_classes, 3, padding=1)

    @classmethod
    def check_config(cls, config):
        if config.width != 1.0:
            raise config_error(config, "tiny_conv has one width: leave width=1")

    def forward(self, phases):
        (x,) = self.check_inputs(phases)
        return {"logits": self.conv(x)}


@register_model("tiny_baseline")
def _tiny_baseline():
    return ModelConfig(name="tiny_baseline", arch="tiny_conv", fusion="single", num_phases=1,
                       backbone="unet", urim=False, feedback=False)
'''


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are dropped after it (copies of both tables stand in)."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_ARCHS", dict(registry._ARCHS))


@pytest.fixture
def tiny_module(tmp_path, monkeypatch, scratch_registry):
    """The one-file baseline above, imported from a temporary folder."""
    (tmp_path / "tiny_baseline_module.py").write_text(textwrap.dedent(TINY_BASELINE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tiny_baseline_module", raising=False)
    module = importlib.import_module("tiny_baseline_module")
    yield module
    sys.modules.pop("tiny_baseline_module", None)


def test_registered_names_and_archs_are_unchanged():
    assert set(list_models()) == NAMES
    assert set(list_archs()) == ARCHS


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_default_validates_and_states_its_phases(name):
    cfg = registry.default_config(name)
    assert cfg.name == name and cfg.arch in ARCHS
    assert registry.validate_config(cfg) is cfg
    assert cfg.input_phases == (1 if name in PV_ONLY_NAMES else cfg.num_phases)
    assert cfg.input_phases == (1 if name in PV_ONLY_NAMES else 2)


def test_a_new_baseline_is_one_file(tiny_module, tmp_path):
    assert "tiny_baseline" in list_models() and "tiny_conv" in list_archs()
    model = create_model("tiny_baseline")
    assert isinstance(model, tiny_module.TinyConv) and model.config.input_phases == 1
    pv, art = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert model([pv, art])["logits"].shape == (1, 2, 32, 32)  # PV-only: a longer list is accepted
    # its own constraint and the generic ones
    with pytest.raises(ConfigError, match="tiny_conv has one width"):
        create_model("tiny_baseline", width=0.5)
    with pytest.raises(ConfigError, match="no URIM"):
        create_model("tiny_baseline", urim=True)
    with pytest.raises(ConfigError, match="num_phases must be 1"):
        create_model("tiny_baseline", num_phases=2)
    # the bundle path rebuilds it from the saved config: two phase names are fine for a PV-only model
    path = save_bundle(tmp_path / "tiny.mpliver", model, ["PV", "ART"], PreprocessConfig(input_size=32))
    bundle = load_bundle(path)
    assert type(bundle.tumor_model) is tiny_module.TinyConv
    assert bundle.model_config == model.config
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.tumor_model([pv])["logits"], model([pv])["logits"])


def test_a_scratch_registration_is_gone_after_its_test(tmp_path):
    """What the fixtures promise, checked in one test (not by test order): registrations made under the
    scratch tables are gone once they are restored."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_MODELS", dict(registry._MODELS))
        mp.setattr(registry, "_ARCHS", dict(registry._ARCHS))
        (tmp_path / "tiny_gone_module.py").write_text(textwrap.dedent(TINY_BASELINE))
        mp.syspath_prepend(str(tmp_path))
        importlib.import_module("tiny_gone_module")
        assert "tiny_baseline" in list_models() and "tiny_conv" in list_archs()
    sys.modules.pop("tiny_gone_module", None)
    assert "tiny_baseline" not in list_models() and "tiny_conv" not in list_archs()
    with pytest.raises(ConfigError, match="unknown arch 'tiny_conv'"):
        build_model(ModelConfig(name="t", arch="tiny_conv", fusion="single", num_phases=1, urim=False))


def test_registration_refuses_duplicates_and_non_models(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_model("paper")(lambda: ModelConfig(name="paper"))
    with pytest.raises(ValueError, match="already registered"):
        register_arch("multiphase")(type("Other", (SegmentationModel,), {}))
    with pytest.raises(TypeError, match="not a SegmentationModel"):
        register_arch("plain")(torch.nn.Conv2d)


def test_each_model_file_checks_its_own_constraints():
    with pytest.raises(ConfigError, match="liver_resunet is a residual U-Net"):
        create_model("liver_resunet", backbone="resnet50")
    # a hand-written config may not give the PV-only liver model a fusion: the rule is `fusion='single'`
    bad = dict(registry.default_config("liver_resunet").to_dict(), fusion="sam", num_phases=2)
    with pytest.raises(ConfigError, match="fusion must be 'single'"):
        build_model(ModelConfig.from_dict(bad))
    with pytest.raises(ConfigError, match="num_phases must be >= 2"):
        build_model(ModelConfig.from_dict({**bad, "num_phases": 1}))
    with pytest.raises(ConfigError, match="nnunet2d is a plain U-Net"):
        create_model("nnunet2d", backbone="resnet50")
    with pytest.raises(ConfigError, match="mw_unet is built on U-Net encoders"):
        create_model("mw_unet", backbone="resnet50")
    with pytest.raises(ConfigError, match="shared_encoder needs more than one stream"):
        create_model("ilf", shared_encoder=True)
