"""Kedro datasets: raw image folders, the embedded demo data, encoded samples, checkpoints,
training states, and Kedro's file datasets saved atomically."""

from efm_seg.framework.datasets.atomic_files import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicTextDataset,
)
from efm_seg.framework.datasets.checkpoint import NpzDataset, TorchCheckpointDataset
from efm_seg.framework.datasets.image_folder import ImageFolderDataset, SyntheticSceneFolderDataset
from efm_seg.framework.datasets.sample_store import SampleStoreDataset
from efm_seg.framework.datasets.scenes import PredictionFolderDataset, SceneFolderDataset
from efm_seg.framework.datasets.training_state import TrainingStateDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicMatplotlibDataset",
    "AtomicTextDataset",
    "ImageFolderDataset",
    "NpzDataset",
    "PredictionFolderDataset",
    "SampleStoreDataset",
    "SceneFolderDataset",
    "SyntheticSceneFolderDataset",
    "TorchCheckpointDataset",
    "TrainingStateDataset",
]
