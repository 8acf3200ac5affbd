"""Model bundles: save/load round trip, and refusal of foreign, corrupt or incompatible files."""

from __future__ import annotations

import pytest
import torch

import mpliver
from helpers.predict_toys import tiny_bundle, tiny_model
from mpliver.cli import main
from mpliver.data.config import PreprocessConfig
from mpliver.errors import ConfigError
from mpliver.inference.bundle import FORMAT_VERSION, BundleError, load_bundle, save_bundle


def _rewrite(path, **changes):
    content = torch.load(path, weights_only=True)
    content.update(changes)
    torch.save(content, path)
    return path


def test_round_trip_rebuilds_identical_models(tmp_path):
    path = tiny_bundle(tmp_path / "m.mpliver", liver=True)
    bundle = load_bundle(path)
    reference = tiny_model()  # the same seed builds the same initial weights that were saved
    for key, value in reference.state_dict().items():
        assert torch.equal(bundle.tumor_model.state_dict()[key], value), key
    assert bundle.phases == ["PV", "ART"] and bundle.synthetic and bundle.training["num_cases"] == 4
    assert bundle.preprocess == PreprocessConfig(input_size=64, registration="liver",
                                                 liver_mask_source="model")
    assert bundle.model_config.width == 0.25 and bundle.model_config.blocks == (1, 1, 1, 1)
    assert bundle.liver is not None and bundle.liver.input_size == 64
    assert bundle.mpliver_version == mpliver.__version__ and bundle.format_version == FORMAT_VERSION
    x = [torch.rand(2, 3, 64, 64) for _ in range(2)]
    with torch.no_grad():
        torch.testing.assert_close(bundle.tumor_model(x)["logits"], reference(x)["logits"])
    assert not bundle.tumor_model.training
    assert "synthetic" in bundle.describe()


def test_newer_format_is_refused_in_one_line(tmp_path):
    path = _rewrite(tiny_bundle(tmp_path / "m.mpliver"), format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=f"bundle format {FORMAT_VERSION + 1} .* not supported") as err:
        load_bundle(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_other_major_version_is_refused(tmp_path):
    path = _rewrite(tiny_bundle(tmp_path / "m.mpliver"), mpliver_version="99.0.0")
    with pytest.raises(BundleError, match="mpliver 99.0.0 is incompatible"):
        load_bundle(path)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "none.mpliver")
    garbage = tmp_path / "garbage.mpliver"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(BundleError, match="not a readable"):
        load_bundle(garbage)
    good = tiny_bundle(tmp_path / "m.mpliver")
    truncated = tmp_path / "truncated.mpliver"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BundleError, match="not a readable"):
        load_bundle(truncated)
    other = tmp_path / "checkpoint.pt"
    torch.save({"format": "mpliver-checkpoint-1", "model": {}}, other)
    with pytest.raises(BundleError, match="not an mpliver model bundle"):
        load_bundle(other)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    path = tiny_bundle(tmp_path / "m.mpliver")
    content = torch.load(path, weights_only=True)
    content["tumor"]["config"]["width"] = 0.5
    torch.save(content, path)
    with pytest.raises(BundleError, match="tumour model cannot be rebuilt"):
        load_bundle(path)


def test_phase_names_must_match_the_model(tmp_path):
    pre = PreprocessConfig(input_size=64, liver_mask_source="model")
    with pytest.raises(ConfigError, match="takes 2 phases"):
        save_bundle(tmp_path / "m.mpliver", tiny_model(), ["PV", "ART", "DELAY"], pre)
    with pytest.raises(ConfigError, match="distinct names"):
        save_bundle(tmp_path / "m.mpliver", tiny_model(), ["PV", "PV"], pre)


def test_cli_reports_an_incompatible_bundle_in_one_line(tmp_path, capsys):
    path = _rewrite(tiny_bundle(tmp_path / "m.mpliver"), format_version=7)
    code = main(["predict", "--model", str(path), "--out", str(tmp_path / "out"), "--pv", "x", "--art", "y"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "format 7" in err and len(err.splitlines()) == 1
