"""Kedro datasets: raw image folders, the embedded demo data, encoded samples, checkpoints,
training states, and Kedro's file datasets saved atomically.

The catalog names them ``efm_seg.framework.datasets.<Class>``. Each is imported when the catalog
first asks for it: the checkpoint datasets need torch, and the hooks (which every ``kedro``
command imports) use the sample store's alone.
"""

from importlib import import_module
from typing import TYPE_CHECKING

_MODULES = {
    "AtomicCSVDataset": "atomic_files",
    "AtomicJSONDataset": "atomic_files",
    "AtomicMatplotlibDataset": "atomic_files",
    "AtomicTextDataset": "atomic_files",
    "ImageFolderDataset": "image_folder",
    "NpzDataset": "checkpoint",
    "OnnxModelDataset": "checkpoint",
    "PredictionFolderDataset": "scene_folders",
    "SampleStoreDataset": "sample_store",
    "SceneFolderDataset": "scene_folders",
    "SyntheticSceneFolderDataset": "image_folder",
    "TorchCheckpointDataset": "checkpoint",
    "TrainingStateDataset": "training_state",
}

if TYPE_CHECKING:
    from efm_seg.framework.datasets.atomic_files import (
        AtomicCSVDataset,
        AtomicJSONDataset,
        AtomicMatplotlibDataset,
        AtomicTextDataset,
    )
    from efm_seg.framework.datasets.checkpoint import (
        NpzDataset,
        OnnxModelDataset,
        TorchCheckpointDataset,
    )
    from efm_seg.framework.datasets.image_folder import (
        ImageFolderDataset,
        SyntheticSceneFolderDataset,
    )
    from efm_seg.framework.datasets.sample_store import SampleStoreDataset
    from efm_seg.framework.datasets.scene_folders import PredictionFolderDataset, SceneFolderDataset
    from efm_seg.framework.datasets.training_state import TrainingStateDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicMatplotlibDataset",
    "AtomicTextDataset",
    "ImageFolderDataset",
    "NpzDataset",
    "OnnxModelDataset",
    "PredictionFolderDataset",
    "SampleStoreDataset",
    "SceneFolderDataset",
    "SyntheticSceneFolderDataset",
    "TorchCheckpointDataset",
    "TrainingStateDataset",
]


def __getattr__(name: str):
    if name in _MODULES:
        value = getattr(import_module(f"efm_seg.framework.datasets.{_MODULES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'efm_seg.framework.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
