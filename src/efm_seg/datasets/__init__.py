"""Kedro datasets for image folders: raw inputs, the embedded demo data and encoded samples."""

from efm_seg.datasets.image_folder import ImageFolderDataset, SyntheticSceneFolderDataset
from efm_seg.datasets.sample_store import SampleStoreDataset

__all__ = ["ImageFolderDataset", "SampleStoreDataset", "SyntheticSceneFolderDataset"]
