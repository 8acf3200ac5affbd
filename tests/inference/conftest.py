"""The study and bundle most inference tests share: one tiny phantom case on disk, an untrained tiny bundle,
and its prediction with the label's liver (each built once per test module)."""

from __future__ import annotations

import pytest

from helpers.predict_toys import tiny_bundle, tiny_case, write_case_files
from mpliver.inference.predict import predict


@pytest.fixture(scope="module")
def case():
    return tiny_case()


@pytest.fixture(scope="module")
def files(case, tmp_path_factory):
    return write_case_files(tmp_path_factory.mktemp("case"), case)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "m.mpliver")


@pytest.fixture(scope="module")
def result(bundle_path, files):
    return predict(bundle_path, {"PV": files["PV"], "ART": files["ART"]}, liver_mask=files["label"],
                   case_id="CASE", device="cpu")
