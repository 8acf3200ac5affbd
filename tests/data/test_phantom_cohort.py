"""Cohort writer and CLI: composition, folds, layout, previews, overwrite refusal, `mpliver inspect`."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mpliver.cli import main
from mpliver.data.phantom import PhantomConfig, cohort_composition, cohort_types, generate_case, write_cohort
from mpliver.errors import ConfigError, DatasetError
from mpliver.io.layout import Dataset
from mpliver.io.nifti import read_nifti

TINY = PhantomConfig(shape=(64, 64, 20), spacing=(5.0, 5.0, 9.6))
TINY_ARGS = ["--shape", "64,64,20", "--spacing", "5,5,9.6", "--workers", "1"]


def test_composition_of_the_paper_cohort():
    assert cohort_composition(121) == {"cyst": 36, "FNH": 20, "HEM": 25, "HCC": 26, "METS": 14}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # Largest remainder by hand: 40 × (36, 20, 25, 26, 14) / 121 = 11.90, 6.61, 8.26, 8.60, 4.63.
        (40, {"cyst": 12, "FNH": 7, "HEM": 8, "HCC": 8, "METS": 5}),
        # 5 × ... = 1.49, 0.83, 1.03, 1.07, 0.58: floors 1, 0, 1, 1, 0, then FNH and METS.
        (5, {"cyst": 1, "FNH": 1, "HEM": 1, "HCC": 1, "METS": 1}),
        # 3 × ... = 0.89, 0.50, 0.62, 0.64, 0.35: the three largest remainders.
        (3, {"cyst": 1, "FNH": 0, "HEM": 1, "HCC": 1, "METS": 0}),
        (242, {"cyst": 72, "FNH": 40, "HEM": 50, "HCC": 52, "METS": 28}),
    ],
)
def test_composition_for_other_sizes(n, expected):
    assert cohort_composition(n) == expected


def test_composition_is_proportional_and_complete():
    for n in range(5, 300):
        counts = cohort_composition(n)
        assert sum(counts.values()) == n and min(counts.values()) >= 1
        for t, paper in {"cyst": 36, "FNH": 20, "HEM": 25, "HCC": 26, "METS": 14}.items():
            assert abs(counts[t] - n * paper / 121) < 1.0 + (1 if n < 15 else 0)
    with pytest.raises(ConfigError):
        cohort_composition(0)


def test_types_follow_the_composition_and_the_seed():
    types = cohort_types(121, seed=4)
    assert Counter(types) == Counter(cohort_composition(121))
    assert cohort_types(121, seed=4) == types and cohort_types(121, seed=5) != types


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "cohort"
    write_cohort(root, 5, seed=2, config=TINY, num_folds=5, workers=1)
    return root


def test_written_layout_is_valid(cohort):
    ds = Dataset(cohort)
    cases = ds.validate(check_values=True)
    assert cases == [f"PHANTOM_{i:04d}" for i in range(5)]
    assert ds.phases == ["PV", "ART"]
    meta = ds.meta
    assert "synthetic" in meta["description"].lower() and "research" in meta["description"].lower()
    assert meta["synthetic"]["seed"] == 2 and meta["synthetic"]["config"]["shape"] == [64, 64, 20]
    assert Counter(ds.tumor_type(c) for c in cases) == Counter(cohort_composition(5))
    assert not (cohort / ".phantom.json").exists()
    for case in cases:
        info = meta["cases"][case]
        assert len(info["motion_mm"]) == 3 and info["lesions"] >= 1
        art, art_geom = read_nifti(ds.image_path(case, "ART"))
        art_label, lab_geom = read_nifti(ds.phase_label_path(case, "ART"))
        assert art_geom.same_grid(lab_geom) and art.dtype == np.int16
        png = (cohort / "previews" / f"{case}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_written_files_hold_the_generated_case(cohort):
    ds = Dataset(cohort)
    case = "PHANTOM_0003"
    generated = generate_case(3, 2, ds.tumor_type(case), TINY)
    pv, pv_geom = read_nifti(ds.image_path(case, "PV"), dtype=np.float32)
    np.testing.assert_array_equal(pv, generated.phases["PV"])
    np.testing.assert_allclose(pv_geom.affine, generated.geometries["PV"].affine, atol=1e-5)
    label, _ = read_nifti(ds.label_path(case))
    np.testing.assert_array_equal(label, generated.label)
    np.testing.assert_allclose(ds.meta["cases"][case]["motion_mm"], generated.motion_mm, atol=1e-3)


def test_folds_are_stratified_by_type():
    types = dict(zip([f"PHANTOM_{i:04d}" for i in range(121)], cohort_types(121, seed=0), strict=True))
    from mpliver.data.folds import stratified_folds

    folds = stratified_folds(types, 5, seed=0)
    for ttype in set(types.values()):
        per_fold = Counter(folds[c] for c, t in types.items() if t == ttype)
        assert max(per_fold.values()) - min(per_fold.get(f, 0) for f in range(5)) <= 1


def test_folds_in_dataset_json(cohort):
    ds = Dataset(cohort)
    folds = ds.folds()
    assert sorted(folds) == [0, 1, 2, 3, 4] and all(len(v) == 1 for v in folds.values())


def test_overwrite_refusal(tmp_path, capsys):
    root = tmp_path / "out"
    assert main(["phantom", str(root), "--cases", "5", "--seed", "1", "--no-previews", *TINY_ARGS]) == 0
    assert not (root / "previews").exists()
    before = (root / "dataset.json").read_text()
    capsys.readouterr()
    assert main(["phantom", str(root), "--cases", "5", "--seed", "9", "--no-previews", *TINY_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "different dataset" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1 and str(root) in err
    assert (root / "dataset.json").read_text() == before  # nothing touched
    # The same cohort again is not "different"; --overwrite replaces a different one.
    assert main(["phantom", str(root), "--cases", "5", "--seed", "1", "--no-previews", *TINY_ARGS]) == 0
    assert (
        main(
            ["phantom", str(root), "--cases", "5", "--seed", "9", "--no-previews", "--overwrite", *TINY_ARGS]
        )
        == 0
    )
    assert json.loads((root / "dataset.json").read_text())["synthetic"]["seed"] == 9


def test_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="other files"):
        write_cohort(tmp_path, 5, config=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_bad_options(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "x"), "--cases", "5", "--shape", "64,64"]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main(["phantom", str(tmp_path / "x"), "--cases", "5", "--size", "huge"]) == 2
    assert main(["phantom", str(tmp_path / "x"), "--cases", "3"]) == 2  # fewer cases than folds
    assert not (tmp_path / "x").exists()


def test_inspect_reports_independently_measured_medians(cohort, capsys):
    assert main(["inspect", str(cohort), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ds = Dataset(cohort)
    # Independent re-computation for one case and phase, in float64.
    case = next(r for r in report["cases"] if r["tumor_type"] == "FNH")
    art, _ = read_nifti(ds.image_path(case["case"], "ART"))
    lab, _ = read_nifti(ds.phase_label_path(case["case"], "ART"))
    art = art.astype(np.float64)
    expected = np.median(art[lab == 2]) - np.median(art[lab == 1])
    assert case["phases"]["ART"]["delta_hu"] == pytest.approx(expected)
    fnh = [r["phases"]["PV"]["delta_hu"] for r in report["cases"] if r["tumor_type"] == "FNH"]
    assert report["per_type"]["FNH"]["PV"]["delta_hu"] == pytest.approx(float(np.median(fnh)))
    assert set(report["per_type"]) == {"cyst", "FNH", "HEM", "HCC", "METS", "all"}
    # the lesions the phase does not show: |CNR| < 0.5, by a float64 computation of the CNR by hand
    from scipy import ndimage
    lesions, n = ndimage.label(lab == 2)
    parenchyma = art[lab == 1]
    sd = 1.4826 * np.median(np.abs(parenchyma - np.median(parenchyma)))
    spacing = np.asarray(read_nifti(ds.image_path(case["case"], "ART"))[1].spacing)
    radius = np.maximum(1, np.round(5.0 / spacing))
    axes = np.ogrid[tuple(slice(-int(r), int(r) + 1) for r in radius)]
    ball = sum((a / max(r, 1)) ** 2 for a, r in zip(axes, radius, strict=True)) <= 1.0
    cnr = []
    for i in range(1, n + 1):
        lesion = lesions == i
        ring = ndimage.binary_dilation(lesion, structure=ball) & (lab == 1)
        if lesion.sum() >= 8 and ring.any():
            cnr.append((np.median(art[lesion]) - np.median(art[ring])) / sd)
    assert case["phases"]["ART"]["lesions"] == len(cnr) >= 1
    assert case["phases"]["ART"]["faint_lesions"] == sum(abs(c) < 0.5 for c in cnr)
    counted = [r["phases"]["PV"] for r in report["cases"] if r["tumor_type"] == "FNH"]
    share = 100 * sum(c["faint_lesions"] for c in counted) / sum(c["lesions"] for c in counted)
    assert report["per_type"]["FNH"]["PV"]["faint_pct"] == pytest.approx(share)
    assert main(["inspect", str(cohort)]) == 0
    table = capsys.readouterr().out
    assert "FNH" in table and "noise SD ART" in table and "faint % PV" in table


def test_inspect_refuses_a_non_dataset(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err


def test_inspect_on_a_dataset_without_phase_labels(tmp_path, capsys):
    """Any labelled dataset: ART on the PV grid without labelsTr_phases uses the PV label; a case whose ART
    lies on another grid and has no ART label gets no ART figures (null), not wrong ones."""
    from mpliver.io.geometry import Geometry
    from mpliver.io.layout import write_dataset_json
    from mpliver.io.nifti import write_nifti

    rng = np.random.default_rng(0)
    geom = Geometry.from_spacing((24, 24, 6), (2.0, 2.0, 4.0))
    shifted = Geometry.from_spacing((24, 24, 6), (2.0, 2.0, 4.0), origin=(0.0, 0.0, 3.0))
    label = np.zeros((24, 24, 6), dtype=np.uint8)
    label[2:22, 2:22, :] = 1
    label[8:14, 8:14, 1:5] = 2
    for case, art_geom in (("A", geom), ("B", shifted)):
        for idx, (liver_hu, lesion_hu) in enumerate(((110.0, 60.0), (80.0, 140.0))):
            image = np.full(label.shape, -1000.0) + rng.normal(0, 10, label.shape)
            image[label == 1] += 1000.0 + liver_hu
            image[label == 2] += 1000.0 + lesion_hu
            write_nifti(
                tmp_path / "imagesTr" / f"{case}_{idx:04d}.nii.gz",
                image.astype(np.float32),
                geom if idx == 0 else art_geom,
            )
        write_nifti(tmp_path / "labelsTr" / f"{case}.nii.gz", label, geom)
    write_dataset_json(
        tmp_path, ["PV", "ART"], 2, cases={"A": {"tumor_type": "HCC"}, "B": {"tumor_type": "HCC"}}
    )
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["case"]: r for r in report["cases"]}
    assert rows["A"]["phases"]["ART"]["delta_hu"] == pytest.approx(60.0, abs=4.0)
    assert rows["A"]["phases"]["PV"]["delta_hu"] == pytest.approx(-50.0, abs=4.0)
    assert rows["B"]["phases"]["ART"] is None
    assert report["per_type"]["HCC"]["ART"]["delta_hu"] == pytest.approx(60.0, abs=4.0)


def test_print_cohort_table(cohort):
    from rich.console import Console

    from mpliver.cli.inspect import print_cohort_table

    console = Console(record=True, width=200)
    summary = print_cohort_table(cohort, console=console)
    text = console.export_text()
    assert summary["all"]["cases"] == 5 and "noise SD PV" in text and "METS" in text


def test_phantom_config_from_dict_names_unknown_keys():
    from mpliver.data.phantom import PhantomConfig
    from mpliver.errors import ConfigError

    cfg = PhantomConfig(shape=(32, 32, 8))
    assert PhantomConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown phantom config key\\(s\\): colour, zoom"):
        PhantomConfig.from_dict({**cfg.to_dict(), "zoom": 2, "colour": 1})
