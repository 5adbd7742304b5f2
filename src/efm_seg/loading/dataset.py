"""The segmentation dataset: samples of a store as normalised tensors, with their EFM when asked
for, and the per-band statistics that normalise them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from efm_seg.data.samples import SampleStore
from efm_seg.loading.augment import dihedral_key, reseed_transform
from efm_seg.loading.efm_store import EFMStore

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1]: the statistics the pretrained encoders expect."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def sample_shape(store: SampleStore, ids: Sequence[str]) -> tuple[int, int]:
    """The common ``(H, W)`` of the samples ``ids`` of ``store``.

    Only the first, middle and last sample are looked at (their label PNG headers, not their
    pixels), so the call is instant for any split; the preprocessing pipeline writes one size
    per store, and this catches a mixed store or an id list from elsewhere in the common case.

    Raises:
        ValueError: if ``ids`` is empty or the sampled shapes differ.
    """
    if len(ids) == 0:
        raise ValueError("no sample ids given: cannot determine the sample shape")
    positions = sorted({0, len(ids) // 2, len(ids) - 1})
    shapes: dict[str, tuple[int, int]] = {}
    for position in positions:
        sample_id = ids[position]
        with Image.open(store.mask_path(sample_id)) as mask:
            width, height = mask.size
        shapes[sample_id] = (height, width)
    first_id = ids[0]
    for sample_id, shape in shapes.items():
        if shape != shapes[first_id]:
            raise ValueError(
                f"samples differ in shape: {first_id!r} is {shapes[first_id]} (H, W) but "
                f"{sample_id!r} is {shape}; training needs one size per store — re-run the "
                "preprocessing pipeline with a fixed size"
            )
    return shapes[first_id]


def band_statistics(store: SampleStore, ids: Sequence[str]) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the samples ``ids``, in [0, 1] units.

    What non-RGB bands are normalised with (ImageNet's statistics describe RGB photographs,
    not near-infrared or elevation): computed on the training split, one pass, one sample in
    memory at a time, summed in float64. A constant band gets a standard deviation of 1, so it
    normalises to zero instead of dividing by zero.
    """
    if len(ids) == 0:
        raise ValueError("no sample ids given: cannot compute band statistics")
    total = squares = None
    pixels = 0
    for sample_id in ids:
        image, _ = store.read(sample_id)
        values = image.reshape(-1, image.shape[2]).astype(np.float64) / 255.0
        total = values.sum(axis=0) if total is None else total + values.sum(axis=0)
        squared = np.square(values).sum(axis=0)
        squares = squared if squares is None else squares + squared
        pixels += values.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - np.square(mean), 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


def checkpoint_normalization(checkpoint: Mapping[str, Any]) -> dict[str, list[float]]:
    """The per-channel ``mean`` and ``std`` a checkpoint's model was trained with (ImageNet's
    for a checkpoint from before they were recorded, which were all RGB)."""
    normalization = checkpoint.get("normalization") or {}
    return {
        key: [float(v) for v in normalization.get(key, default)]
        for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD))
    }


def _channel_stats(name: str, values: Sequence[float], channels: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape != (channels,) or not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be {channels} finite numbers (one per channel of the samples), "
            f"got {values!r}"
        )
    return array


class SegmentationSamples(Dataset):
    """Samples of a :class:`SampleStore` as normalised tensors, with their EFM if asked for.

    Item ``i`` is a dict:

    * ``"image"``: ``float32`` ``(C, H, W)``, ``(x / 255 − mean) / std`` per channel;
    * ``"mask"``: ``int64`` ``(H, W)`` labels ``0..C-1`` and the ignore index, unchanged;
    * ``"index"``: ``i`` (the trainer maps it to the EFM row via :attr:`efm_indices`);
    * ``"efm"`` (only with an ``efm_store``): ``float32`` ``(H, W)`` in [0, 1], zeros until the
      store is ready; augmented exactly like the mask;
    * ``"dihedral"`` (only with ``track_geometry``): the :func:`apply_dihedral` key of the flips
      and rotations the sample went through (0 without), so that a map computed on the
      augmented sample can be turned back (:func:`undo_dihedral`).

    Picklable (the store is a path and ids, the EFM store a shared tensor), so it works with
    DataLoader workers started by fork or spawn. See the module docstring for how the
    augmentations are seeded in workers.

    Attributes:
        store: The sample store.
        ids: The sample ids, in item order.
        transform: The albumentations pipeline, or ``None``.
        efm_store: The EFM store, or ``None``.
        efm_indices: ``efm_indices[i]`` is the EFM row of ``ids[i]`` (empty without a store).
    """

    def __init__(
        self,
        store: SampleStore,
        ids: Sequence[str],
        transform: A.BaseCompose | None = None,
        efm_store: EFMStore | None = None,
        efm_indices: Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        track_geometry: bool = False,
    ) -> None:
        """Check the ids against the store and the EFM rows against the EFM store.

        Args:
            store: Where the encoded samples are.
            ids: Sample ids of this split, in item order.
            transform: An albumentations pipeline (:func:`build_transforms`), or ``None``.
            efm_store: Per-sample EFMs; when given, items carry ``"efm"``.
            efm_indices: Row of ``efm_store`` for each id; default ``0..len(ids)-1``.
            mean: Per-channel mean in [0, 1] units, one per channel of the store (default
                ImageNet's, for RGB; :func:`band_statistics` for other bands).
            std: Per-channel standard deviation in [0, 1] units, ``> 0`` (default ImageNet).
            track_geometry: Add each item's ``"dihedral"`` key.

        Raises:
            ValueError: if ids are missing from the store, ``efm_indices`` does not fit, or
                ``mean`` / ``std`` are not one valid number per channel of the store.
        """
        self.store = store
        self.ids: tuple[str, ...] = tuple(ids)
        self.track_geometry = track_geometry
        known = set(store.ids)
        missing = [sample_id for sample_id in self.ids if sample_id not in known]
        if missing:
            shown = ", ".join(repr(sample_id) for sample_id in missing[:5])
            raise ValueError(
                f"{len(missing)} of {len(self.ids)} split ids are not in the sample store at "
                f"{store.root} (first: {shown}{', ...' if len(missing) > 5 else ''}); the split "
                "and the encoded samples come from different preprocessing runs — re-run the "
                "preprocessing and split pipelines together"
            )
        self.transform = transform
        self.efm_store = efm_store
        if efm_store is None:
            if efm_indices is not None:
                raise ValueError("efm_indices given without an efm_store")
            self.efm_indices: tuple[int, ...] = ()
        else:
            rows = range(len(self.ids)) if efm_indices is None else efm_indices
            self.efm_indices = tuple(int(row) for row in rows)
            if len(self.efm_indices) != len(self.ids):
                raise ValueError(
                    f"efm_indices has {len(self.efm_indices)} rows for {len(self.ids)} ids"
                )
            bad = [row for row in self.efm_indices if not 0 <= row < efm_store.num_samples]
            if bad:
                raise ValueError(
                    f"efm_indices out of range [0, {efm_store.num_samples}): {bad[:5]}"
                )
        mean_array = _channel_stats("mean", mean, store.channels)
        std_array = _channel_stats("std", std, store.channels)
        if np.any(std_array <= 0):
            raise ValueError(f"std must be positive, got {std!r}")
        # (x / 255 − mean) / std as one multiply-add per pixel.
        self._scale = (1.0 / std_array).astype(np.float32)
        self._shift = (mean_array / std_array).astype(np.float32)
        # The base seed of the pipeline, combined with the worker seed in workers.
        self._base_seed = getattr(transform, "seed", None) if transform is not None else None
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def _reseed_in_worker(self) -> None:
        """Reseed the pipeline once per worker process (and per worker incarnation)."""
        info = get_worker_info()
        if info is None or self.transform is None or info.seed == self._worker_seed:
            return
        self._worker_seed = info.seed
        entropy = [info.seed % 2**64]
        if self._base_seed is not None:
            entropy.append(int(self._base_seed) % 2**64)
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        reseed_transform(self.transform, seed)

    def _normalise(self, image: np.ndarray) -> torch.Tensor:
        # uint8 is 0..255; a float image (only if a custom transform returns one) is taken as 0..1.
        pixels = image.astype(np.float32)
        if image.dtype == np.uint8:
            pixels /= np.float32(255.0)
        pixels = pixels * self._scale - self._shift
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self.ids) <= i < len(self.ids):
            raise IndexError(f"index {i} out of range for {len(self.ids)} samples")
        i = int(i) % len(self.ids)
        image, labels = self.store.read(self.ids[i])
        efm = self.efm_store.get(self.efm_indices[i]) if self.efm_store is not None else None
        if self.transform is not None:
            self._reseed_in_worker()
            inputs: dict[str, np.ndarray] = {"image": image, "mask": labels}
            if efm is not None:
                inputs["efm"] = efm
            if self.track_geometry:
                inputs["coords"] = np.arange(labels.size, dtype=np.int32).reshape(labels.shape)
            out = self.transform(**inputs)
            image, labels = out["image"], out["mask"]
            if efm is not None:
                efm = out["efm"]
            key = dihedral_key(out["coords"]) if self.track_geometry else 0
        else:
            key = 0
        item: dict[str, Any] = {
            "image": self._normalise(image),
            "mask": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "index": i,
        }
        if efm is not None:
            item["efm"] = torch.from_numpy(np.ascontiguousarray(efm, dtype=np.float32))
        if self.track_geometry:
            item["dihedral"] = key
        return item
