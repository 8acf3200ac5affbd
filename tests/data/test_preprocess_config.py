"""PreprocessConfig validation and round trip; whole-slice (`paper`) pre-processing; in-memory stacks."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.prep_scene import write_scene_dataset
from mpliver.data.cache import CachedCase, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset
from mpliver.data.liver_mask import FromLabel
from mpliver.data.prepare import prepare_case
from mpliver.data.slices import full_box
from mpliver.errors import ConfigError
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti


def test_defaults_paper_preset_and_round_trip():
    cfg = PreprocessConfig()
    assert cfg.window == (-70.0, 180.0) and cfg.input_size == 256 and cfg.crop and cfg.context_slices == 3
    assert cfg.registration == "liver" and cfg.liver_mask_source == "label" and cfg.halo == 1
    paper = PreprocessConfig.paper()
    assert (paper.input_size, paper.crop, paper.registration) == (512, False, "tumor-center")
    custom = PreprocessConfig(liver_mask_source="file", liver_mask_pattern="m/{case}.nii.gz",
                              liver_mask_values=[5], axial_axis=0)
    assert PreprocessConfig.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize("kwargs, match", [
    ({"window": (180, -70)}, "window"),
    ({"context_slices": 2}, "odd"),
    ({"registration": "affine"}, "registration"),
    ({"liver_mask_source": "file"}, "pattern"),
    ({"axial_axis": 3}, "axial_axis"),
    ({"input_size": 4}, "input_size"),
    ({"margin_mm": -1}, "margin"),
])
def test_invalid_values_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PreprocessConfig(**kwargs)


def test_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="input_sise"):
        PreprocessConfig.from_dict({"input_sise": 128})


def test_whole_slices_paper_preset_and_in_memory_stacks(tmp_path):
    ds_root = write_scene_dataset(tmp_path / "ds", num_cases=1, shape=(40, 48, 12), spacing=(4.0, 3.5, 5.0))
    cfg = PreprocessConfig.paper(input_size=64)
    preprocess_dataset(ds_root, tmp_path / "cache", cfg, workers=1)
    cc = CachedCase.open(tmp_path / "cache" / "cases" / "SCENE_000")
    m = cc.mapping
    # the whole 40 x 48 slice (160 x 168 mm) padded to a 168 mm square: 42 x 48 voxels
    assert m.box == full_box((40, 48), (4.0, 3.5)) and m.box.size == (42, 48)
    assert cc.meta["transforms"]["ART"]["method"] == "tumor-center"
    label, _ = read_nifti(ds_root / "labelsTr" / "SCENE_000.nii.gz")
    back = m.paste_back(np.asarray(cc.label[1:-1]), mode="nearest")
    np.testing.assert_array_equal(back, label)  # 64 >= the box: lossless
    # the in-memory path (inference) gives the same stacks as the cached dataset
    ds = Dataset(ds_root)
    case = ds.load_case("SCENE_000", with_phase_labels=True)
    prepared = prepare_case(case, cfg, FromLabel())
    stacks = prepared.stacks()
    data = SliceDataset(tmp_path / "cache", ["SCENE_000"])
    assert stacks.shape == (len(data), 2, 3, 64, 64)
    for s in (0, len(data) // 2, len(data) - 1):
        np.testing.assert_allclose(stacks[s], data[s]["phases"].numpy(), atol=1e-3)  # float16 cache


@pytest.mark.parametrize("kwargs, key", [
    ({"window": (180, -70)}, "window"),
    ({"context_slices": 2}, "context_slices"),
    ({"registration": "affine"}, "registration"),
    ({"liver_mask_source": "file"}, "liver_mask_pattern"),
    ({"input_size": 4}, "input_size"),
    ({"cache_dtype": "int8"}, "cache_dtype"),
])
def test_errors_start_with_the_key_so_a_nesting_config_can_prefix_it(kwargs, key):
    """The `require` style shared by every config dataclass: '<key> <why> (got <value>)', one line."""
    with pytest.raises(ConfigError) as info:
        PreprocessConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{key} ") and "(got " in message and "\n" not in message
