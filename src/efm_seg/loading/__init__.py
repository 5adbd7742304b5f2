"""Loading training data: the per-sample EFM store, the augmentations and the segmentation dataset.

Plain PyTorch / albumentations, no Kedro:

* :class:`EFMStore` holds every training sample's Error Fingerprint Map, quantised to ``uint8``,
  in one shared-memory tensor that the trainer refreshes every few epochs and that DataLoader
  workers read;
* :func:`build_transforms` turns the ``augment`` parameters into one albumentations pipeline
  that moves the image, the mask and the EFM together (paper §3.1);
* :class:`SegmentationSamples` reads samples from a :class:`~efm_seg.data.samples.SampleStore`
  and returns normalised tensors, with the sample's EFM when an :class:`EFMStore` is given.

Randomness and determinism of the augmentations:

* ``build_transforms(augment, seed=s)`` gives a pipeline whose sequence of draws is fixed by
  ``s``. Nothing here touches the global ``random`` / ``numpy`` / ``torch`` seeds.
* In DataLoader worker processes, :class:`SegmentationSamples` reseeds its pipeline from the
  worker's torch seed (``torch.utils.data.get_worker_info().seed``, which the DataLoader draws
  from its ``generator`` or from the torch default RNG when an iterator starts), combined with
  ``s``. Without this every forked worker would copy the same pipeline state and draw the same
  augmentations as its siblings, and — without persistent workers — again in every epoch. With
  it, ``torch.manual_seed`` (or ``DataLoader(generator=...)``) plus ``s`` fix the augmentations
  of a whole run, whatever ``num_workers`` is; each worker and each epoch still draws its own.
"""

from __future__ import annotations

from efm_seg.loading.augment import (
    AUGMENT_KEYS,
    RGB_ONLY_AUGMENTS,
    apply_dihedral,
    build_transforms,
    dihedral_key,
    reseed_transform,
    undo_dihedral,
)
from efm_seg.loading.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationSamples,
    band_statistics,
    checkpoint_normalization,
    sample_shape,
)
from efm_seg.loading.efm_store import EFMStore

__all__ = [
    "AUGMENT_KEYS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RGB_ONLY_AUGMENTS",
    "EFMStore",
    "SegmentationSamples",
    "apply_dihedral",
    "band_statistics",
    "build_transforms",
    "checkpoint_normalization",
    "dihedral_key",
    "reseed_transform",
    "sample_shape",
    "undo_dihedral",
]
