"""Readers and writers: NIfTI, DICOM series, DICOM-SEG and the case layout. Everything returns (array, Geometry)."""

from mpliver.io.geometry import Geometry, from_sitk, to_sitk
from mpliver.io.layout import Dataset, write_dataset_json
from mpliver.io.nifti import read_nifti, write_nifti

__all__ = ["Geometry", "from_sitk", "to_sitk", "Dataset", "write_dataset_json", "read_nifti", "write_nifti"]
