"""A PV phase of one or two slices is refused naming the PV file and its slice count (issue 11 item 5), and
a PV too thin for the liver registration names the PV, not the ART."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.predict_toys import tiny_bundle, tiny_case
from mpliver.cli import main
from mpliver.errors import InputError
from mpliver.inference.predict import predict
from mpliver.io.geometry import Geometry
from mpliver.io.nifti import write_nifti


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny phantom case: full ART and liver mask, and PV files holding only slices 6.. 6+n-1."""
    folder = tmp_path_factory.mktemp("thin")
    case = tiny_case()
    pv, geom = case.phases["PV"], case.geometries["PV"]
    files = {"bundle": tiny_bundle(folder / "m.mpliver"),
             "ART": write_nifti(folder / "art.nii.gz", case.phases["ART"].astype(np.int16),
                                case.geometries["ART"])}
    for n in (1, 2, 3):
        affine = geom.affine.copy()
        affine[:3, 3] = geom.index_to_world(np.array([0, 0, 6]))
        sub = Geometry(affine, (*pv.shape[:2], n))
        files[n] = write_nifti(folder / f"pv_{n}.nii.gz", pv[:, :, 6:6 + n].astype(np.int16), sub)
        files[f"mask{n}"] = write_nifti(folder / f"mask_{n}.nii.gz", (case.label[:, :, 6:6 + n] > 0)
                                        .astype(np.uint8), sub)
    return files


@pytest.mark.parametrize("n", [1, 2])
def test_pv_of_one_or_two_slices_names_the_pv(study, tmp_path, capsys, n):
    code = main(["predict", "--model", str(study["bundle"]), "--pv", str(study[n]), "--art",
                 str(study["ART"]), "--liver-mask", str(study[f"mask{n}"]), "--out", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(err) == 1
    assert str(study[n]) in err[0] and f"has {n} axial slice(s)" in err[0] and "art.nii.gz" not in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pv_too_thin_for_liver_registration_names_the_pv(study):
    """3 slices of 10 mm pass the 2.5D minimum but leave the registration pyramid 3 voxels deep."""
    with pytest.raises(InputError) as err:
        predict(study["bundle"], {"PV": study[3], "ART": study["ART"]}, liver_mask=study["mask3"],
                device="cpu")
    text = str(err.value)
    assert text.startswith(f"{study[3]}: the PV liver region is") and "(the PV has 3 axial slice(s))" in text
    assert "does this phase cover the liver" not in text
