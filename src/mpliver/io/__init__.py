"""Readers and writers: NIfTI, DICOM series, DICOM-SEG, the case layout. Volumes come with their Geometry."""

from mpliver.io.dicom import read_dicom_series, scan_series, write_dicom_series
from mpliver.io.dicom_seg import read_dicom_seg, write_dicom_seg
from mpliver.io.geometry import Geometry, from_sitk, to_sitk
from mpliver.io.layout import Dataset, normalize_tumor_type, write_dataset_json
from mpliver.io.nifti import read_nifti, write_nifti
from mpliver.io.resample import reorient_to_grid, resample_to_grid

__all__ = ["Geometry", "from_sitk", "to_sitk", "Dataset", "write_dataset_json", "read_nifti", "write_nifti",
           "read_dicom_series", "scan_series", "write_dicom_series", "read_dicom_seg", "write_dicom_seg",
           "normalize_tumor_type", "reorient_to_grid", "resample_to_grid"]
