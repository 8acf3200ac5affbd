"""Small synthetic CT volumes and studies for the I/O tests (tiny, so tests stay well under a second)."""

from __future__ import annotations

import numpy as np
import pytest

from mpliver.io.geometry import Geometry


def ct_volume(shape=(20, 18, 8), seed=0) -> np.ndarray:
    """A toy abdominal CT in HU: air outside a body ellipse (40 HU), a 'liver' block (100 HU) and noise."""
    rng = np.random.default_rng(seed)
    i, j, _ = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    body = ((i - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + ((j - shape[1] / 2) / (shape[1] * 0.45)) ** 2 < 1
    vol = np.where(body, 40.0, -1000.0)
    vol[4:12, 5:12, 2:6] = 100.0
    return np.rint(vol + rng.normal(0, 5, shape)).astype(np.float32)


def liver_label(shape=(20, 18, 8)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[4:12, 5:12, 2:6] = 1
    lab[6:9, 7:10, 3:5] = 2
    return lab


@pytest.fixture
def geom() -> Geometry:
    return Geometry.from_spacing((20, 18, 8), (0.8, 0.9, 2.5), origin=(-30.0, 12.5, -100.0))


@pytest.fixture
def study(tmp_path, geom):
    """PV and ART DICOM series folders (ART shifted 5 mm in z) and a NIfTI label on the PV grid."""
    from mpliver.io.dicom import write_dicom_series
    from mpliver.io.nifti import write_nifti

    pv = ct_volume(geom.shape, 0)
    art = ct_volume(geom.shape, 1)
    art_geom = Geometry(
        geom.affine + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5.0], [0, 0, 0, 0]]), geom.shape
    )
    write_dicom_series(tmp_path / "src" / "pv", pv, geom)
    write_dicom_series(tmp_path / "src" / "art", art, art_geom)
    write_nifti(tmp_path / "src" / "label.nii.gz", liver_label(geom.shape), geom)
    return {
        "pv": tmp_path / "src" / "pv",
        "art": tmp_path / "src" / "art",
        "label": tmp_path / "src" / "label.nii.gz",
        "pv_array": pv,
        "art_array": art,
        "geom": geom,
        "art_geom": art_geom,
    }


@pytest.fixture
def make_ct():
    """The `ct_volume(shape, seed)` builder, for tests that need their own volumes."""
    return ct_volume


@pytest.fixture
def make_label():
    return liver_label


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory):
    """A small synthetic case (data.phantom) written as PV and ART DICOM series, with its arrays and grids."""
    from mpliver.data.phantom.case import generate_case
    from mpliver.data.phantom.config import PhantomConfig
    from mpliver.io.dicom import write_dicom_series

    root = tmp_path_factory.mktemp("phantom_dicom")
    case = generate_case(0, 0, "HCC", PhantomConfig(shape=(48, 40, 12), spacing=(6.0, 6.0, 8.0)))
    out = {"root": root, "case": case}
    for name in ("PV", "ART"):
        write_dicom_series(root / name, case.phases[name], case.geometries[name], series_description=name,
                           series_number={"PV": 3, "ART": 2}[name])
        out[name] = root / name
    return out
