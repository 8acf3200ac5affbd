"""SliceDataset, EpochSampler and the DataLoader: content, masking, tumour share, deterministic seeding,
fold selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.prep_scene import write_scene_dataset
from mpliver.data.cache import CachedCase, preprocess_dataset
from mpliver.data.config import PreprocessConfig
from mpliver.data.dataset import SliceDataset, split_cases
from mpliver.data.sampling import EpochSampler, make_loader
from mpliver.data.transforms import AffineAugmentation
from mpliver.errors import DatasetError
from mpliver.io.layout import Dataset

CASES = ["SCENE_000", "SCENE_001", "SCENE_002"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    ds = write_scene_dataset(root / "ds", num_cases=3)
    preprocess_dataset(ds, root / "cache", PreprocessConfig(input_size=32, registration="none"), workers=1)
    return root


def test_items_are_masked_stacks_with_tumour_labels(cache):
    data = SliceDataset(cache / "cache", CASES)
    cc = CachedCase.open(cache / "cache" / "cases" / "SCENE_001")
    assert len(data) == sum(CachedCase.open(cache / "cache" / "cases" / c).num_slices for c in CASES)
    first = [i for i, (ci, _) in enumerate(data.items) if ci == 1][0]
    s = 3
    item = data[first + s]
    assert item["case"] == "SCENE_001" and item["slice"] == s
    assert item["axial"] == cc.meta["mapping"]["centre_slices"][s]
    x, y = item["phases"], item["label"]
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # reference: cached float16 images times each slice's own mask; tumour = label 2
    ref = np.asarray(cc.images[:, s:s + 3], np.float32) * np.asarray(cc.mask[s:s + 3], np.float32)[None]
    np.testing.assert_array_equal(x.numpy(), ref)
    np.testing.assert_array_equal(y.numpy(), (np.asarray(cc.label[s + 1]) == 2).astype(np.int64))
    # tumour items are exactly the slices whose label holds tumour
    for i in range(len(data)):
        assert (i in set(data.tumor_items.tolist())) == bool(data[i]["label"].any())


def test_liver_task_gives_unmasked_pv_and_liver_labels(cache):
    data = SliceDataset(cache / "cache", ["SCENE_000"], task="liver")
    cc = CachedCase.open(cache / "cache" / "cases" / "SCENE_000")
    item = data[2]
    assert item["phases"].shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(item["phases"].numpy()[0], np.asarray(cc.images[0, 2:5], np.float32))
    np.testing.assert_array_equal(item["label"].numpy(), (np.asarray(cc.label[3]) >= 1).astype(np.int64))


def test_sampler_share_length_and_epochs():
    s = EpochSampler(tumor_items=range(10), other_items=range(10, 100), num_samples=40, tumor_share=0.25,
                     seed=3)
    idx = [i for i, _ in s]
    assert len(idx) == 40 and sum(i < 10 for i in idx) == 10
    assert len(set(i for i in idx if i < 10)) == 10   # without replacement while the pool lasts
    s.set_epoch(0)
    a = s.indices()
    s.set_epoch(1)
    b = s.indices()
    s.set_epoch(0)
    assert s.indices() == a and a != b
    default = EpochSampler(range(7), range(7, 30), tumor_share=0.5)
    assert len(default) == 7                           # an epoch = number of tumour slices
    only_tumour = [i for i, _ in EpochSampler(range(5), range(5, 9), num_samples=12, tumor_share=1.0)]
    assert all(i < 5 for i in only_tumour)
    with pytest.raises(ValueError):
        EpochSampler(range(3), range(3, 6), tumor_share=1.5)


def _batches(data, workers: int, epoch: int):
    sampler = data.sampler(num_samples=12, tumor_share=0.5, seed=7)
    sampler.set_epoch(epoch)
    loader = make_loader(data, sampler.indices(), batch_size=4, num_workers=workers, seed=7)
    return [(b["phases"].clone(), b["label"].clone(), list(b["case"])) for b in loader]


@pytest.mark.slow
def test_same_seed_same_batches_with_workers(cache):
    data = SliceDataset(cache / "cache", CASES, augmentation=AffineAugmentation())
    serial = _batches(data, 0, epoch=2)
    parallel = _batches(data, 2, epoch=2)
    assert len(serial) == 3
    for (xa, ya, ca), (xb, yb, cb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and ca == cb
    other_epoch = _batches(data, 0, epoch=3)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(serial, other_epoch, strict=True))
    # augmentation happened: the augmented item differs from the plain one
    plain = SliceDataset(cache / "cache", CASES)
    i, seed = data.sampler(num_samples=12, seed=7).indices()[0]
    assert not torch.equal(data[(i, seed)]["phases"], plain[i]["phases"])


def test_split_cases(tmp_path):
    ds = Dataset(write_scene_dataset(tmp_path / "ds", num_cases=5, shape=(16, 16, 6), folds=3))
    train, val, test = split_cases(ds, test_fold=0, val_fold=1)
    assert test == ["SCENE_000", "SCENE_003"] and val == ["SCENE_001", "SCENE_004"] and train == ["SCENE_002"]
    train, val, test = split_cases(ds, test_fold=2)
    assert val == [] and test == ["SCENE_002"] and len(train) == 4
    with pytest.raises(DatasetError, match="fold 7"):
        split_cases(ds, test_fold=7)
    with pytest.raises(DatasetError, match="equals"):
        split_cases(ds, 1, 1)


def test_jitter_mask_dilates_or_erodes_in_plane_by_hand_counts():
    from mpliver.data.dataset import jitter_mask

    mask = np.zeros((3, 9, 9), bool)
    mask[:, 2:7, 2:7] = True  # a 5 x 5 square on every slice
    sizes = {}
    for seed in range(40):
        out = jitter_mask(mask, np.random.default_rng(seed), 1)
        assert out.shape == mask.shape
        assert all((out[0] == out[c]).all() for c in range(3))  # in plane only: slices stay alike
        sizes[int(out[0].sum())] = True
    # eroded 3 x 3 = 9; unchanged 25; dilated by a cross: 25 + 4 sides x 5 = 45
    assert set(sizes) == {9, 25, 45}


def test_mask_jitter_changes_training_items_only(cache):
    plain = SliceDataset(cache / "cache", CASES)
    jittered = SliceDataset(cache / "cache", CASES, mask_jitter=2)
    assert (jittered[5]["phases"] == plain[5]["phases"]).all()  # no seed (validation): untouched
    changed = [not torch.equal(jittered[(i, 7)]["phases"], plain[(i, 7)]["phases"])
               for i in range(len(plain))]
    assert any(changed)
    again = SliceDataset(cache / "cache", CASES, mask_jitter=2)
    assert all(torch.equal(again[(i, 7)]["phases"], jittered[(i, 7)]["phases"]) for i in range(len(plain)))
    with pytest.raises(ValueError, match="mask_jitter"):
        SliceDataset(cache / "cache", CASES, mask_jitter=-1)


def test_intensity_augmentation_in_training_items_only(cache):
    from mpliver.data.transforms import IntensityAugmentation

    plain = SliceDataset(cache / "cache", CASES)
    strong = IntensityAugmentation(noise_prob=1.0, shift_prob=1.0)
    augmented = SliceDataset(cache / "cache", CASES, intensity=strong)
    assert torch.equal(augmented[5]["phases"], plain[5]["phases"])  # validation items: untouched
    for i in range(0, len(plain), 7):
        a, p = augmented[(i, 3)]["phases"], plain[(i, 3)]["phases"]
        outside = p == 0  # masked out (or black): stays exactly zero, the mask is applied after
        inside = ~outside
        assert torch.all(a[outside] == 0)
        if inside.any():
            assert not torch.equal(a[inside], p[inside])
        assert torch.equal(a, SliceDataset(cache / "cache", CASES, intensity=strong)[(i, 3)]["phases"])


def test_liver_task_with_any_phase_draws_a_phase_per_training_slice(cache):
    """liver_phase='any': training items read phase 0 or 1 (drawn per item and seed, reproducibly) with the
    PV label; validation items (no seed) read the primary phase."""
    data = SliceDataset(cache / "cache", ["SCENE_000"], task="liver", liver_phase="any")
    cc = CachedCase.open(cache / "cache" / "cases" / "SCENE_000")
    s = 2
    stacks = [np.asarray(cc.images[p, s:s + 3], np.float32) for p in (0, 1)]
    assert not np.array_equal(*stacks)
    drawn = []
    for seed in range(40):
        item = data[(s, seed)]
        x = item["phases"].numpy()[0]
        matches = [p for p in (0, 1) if np.array_equal(x, stacks[p])]
        assert len(matches) == 1
        drawn.append(matches[0])
        liver = (np.asarray(cc.label[s + 1]) >= 1).astype(np.int64)
        np.testing.assert_array_equal(item["label"].numpy(), liver)
        assert torch.equal(item["phases"], data[(s, seed)]["phases"])
    assert 10 <= sum(drawn) <= 30  # both phases, about half each
    np.testing.assert_array_equal(data[s]["phases"].numpy()[0], stacks[0])
    with pytest.raises(ValueError, match="liver_phase"):
        SliceDataset(cache / "cache", ["SCENE_000"], task="liver", liver_phase="ART")


def test_a_phase_whose_field_misses_the_liver_is_not_drawn(cache, tmp_path):
    """Where the registered phase was filled with air (its grid did not reach that part of the PV grid), the
    liver item reads the primary phase instead, so the label never marks liver on air."""
    import shutil

    from mpliver.data.dataset import covers_liver

    copy = tmp_path / "cache"
    shutil.copytree(cache / "cache", copy)
    images = np.load(copy / "cases" / "SCENE_000" / "images.npy", mmap_mode="r+")
    images[1] = 0  # phase 1: nothing but registration's air fill
    images.flush()
    del images
    data = SliceDataset(copy, ["SCENE_000"], task="liver", liver_phase="any")
    cc = CachedCase.open(copy / "cases" / "SCENE_000")
    liver_slices = [s for s in range(cc.num_slices) if np.any(np.asarray(cc.label[s + 1]) >= 1)]
    assert liver_slices
    for s in liver_slices:
        for seed in range(6):
            np.testing.assert_array_equal(data[(s, seed)]["phases"].numpy()[0],
                                          np.asarray(cc.images[0, s:s + 3], np.float32))
    # the rule itself, by hand: up to 1 % of the liver values at the floor is tolerated
    stack, liver = np.full((3, 10, 10), 0.5, np.float32), np.ones((3, 10, 10), bool)
    stack[1, 0, 0] = 0.0
    assert covers_liver(stack, liver)  # 1 of 300 values
    stack[:, 0, :4] = 0.0
    assert not covers_liver(stack, liver)  # 12 of 300
    assert covers_liver(np.zeros((3, 10, 10), np.float32), np.zeros((3, 10, 10), bool))  # no liver here
    # the liver's top slice: the slice above holds lung (0 after windowing) where the liver is below it;
    # each slice is judged by its own label, so a covered phase stays usable there
    dome = np.full((3, 10, 10), 0.5, np.float32)
    dome[0] = 0.0
    top = np.zeros((3, 10, 10), bool)
    top[1:] = True
    assert covers_liver(dome, top)
    assert not covers_liver(dome, np.ones((3, 10, 10), bool))
