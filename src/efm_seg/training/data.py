"""Training data: the per-sample EFM store, the augmentations and the segmentation dataset.

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

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from efm_seg.data.samples import SampleStore

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1]: the statistics the pretrained encoders expect."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""

AUGMENT_KEYS: tuple[str, ...] = (
    "enabled",
    "hflip",
    "vflip",
    "rotate90",
    "brightness_contrast",
    "hue_saturation",
    "gauss_noise",
)
"""The keys :func:`build_transforms` understands in its ``augment`` mapping."""

RGB_ONLY_AUGMENTS: tuple[str, ...] = ("hue_saturation",)
"""Augmentations defined on RGB colours (hue, saturation): skipped for other bands."""

_BRIGHTNESS_CONTRAST_KEYS = ("limit", "brightness_limit", "contrast_limit", "p")
_HUE_SATURATION_KEYS = ("hue_shift_limit", "sat_shift_limit", "val_shift_limit", "p")
_GAUSS_NOISE_KEYS = ("std_range", "p")
_MEAN_MAP_CHUNK = 64
"""Samples summed at a time by :meth:`EFMStore.mean_map`: bounds its temporary memory."""


# --------------------------------------------------------------------------------------------
# EFM store
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class EFMStore:
    """Every training sample's EFM at full resolution, quantised to ``uint8``, in shared memory.

    The EFM of the trainer is recomputed every few epochs for all training samples (a no-grad
    pass) and read back by the dataset when the sample is next drawn. Kept as ``float32`` it
    would take 1 MiB per 512² sample; quantised as ``round(x · 255)`` it takes a quarter of that
    (256 KiB) with an error of at most ``0.5 / 255`` — far below anything the loss weights of
    eqs. 7/9 resolve — and it stays at full resolution, so no interpolation blurs the focus.

    All planes live in ONE ``(N, H, W)`` ``uint8`` tensor moved to shared memory, with a shared
    per-sample "updated" flag vector. DataLoader workers (forked, or spawned: torch pickles
    shared tensors by handle) therefore see every later :meth:`update` of the main process,
    including between epochs of persistent workers — no reloading, no copies. Updates are not
    synchronised with readers: a worker reading a sample while it is rewritten may get a plane
    that is partly old, partly new, which is harmless for a loss weight.

    Attributes:
        num_samples: N, the number of planes (rows are addressed ``0..N-1``).
        height: H of every plane.
        width: W of every plane.
    """

    def __init__(self, num_samples: int, height: int, width: int) -> None:
        """Allocate N zero planes of ``(height, width)`` in shared memory.

        Args:
            num_samples: Number of samples (rows), ``>= 1``.
            height: Plane height in pixels, ``>= 1``.
            width: Plane width in pixels, ``>= 1``.

        Raises:
            ValueError: if an argument is not a positive integer.
        """
        self.num_samples = _positive_int("num_samples", num_samples)
        self.height = _positive_int("height", height)
        self.width = _positive_int("width", width)
        self._maps = torch.zeros(
            (self.num_samples, self.height, self.width), dtype=torch.uint8
        ).share_memory_()
        # Flags in shared memory too: a plain Python bool set after the fork would never reach
        # the workers, which would keep treating the store as empty.
        self._updated = torch.zeros(self.num_samples, dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"EFMStore(num_samples={self.num_samples}, height={self.height}, "
            f"width={self.width}, ready={self.ready})"
        )

    @property
    def ready(self) -> bool:
        """True once :meth:`update` has stored at least one map (or a state with one was loaded)."""
        return bool(self._updated.any())

    @property
    def bytes_per_sample(self) -> int:
        """Bytes taken by one sample's plane: ``H · W`` (one byte per pixel)."""
        return self.height * self.width

    @property
    def nbytes(self) -> int:
        """Bytes taken by all planes, ``N · H · W``."""
        return self._maps.nbytes

    def _rows(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(indices).reshape(-1)
        if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
            raise ValueError(f"indices must be integers, got dtype {rows.dtype}")
        rows = rows.to(device="cpu", dtype=torch.int64)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.num_samples):
            raise ValueError(
                f"indices must be in [0, {self.num_samples}), got min {int(rows.min())}, "
                f"max {int(rows.max())}"
            )
        return rows

    def update(
        self, indices: torch.Tensor | Sequence[int] | np.ndarray, maps: torch.Tensor
    ) -> None:
        """Store the maps of a batch of samples, quantised to ``uint8``.

        Args:
            indices: ``(B,)`` integer rows, a tensor (any device) or a sequence of ints.
            maps: ``(B, H, W)`` maps, nominally in [0, 1] (values outside are clamped, NaN
                becomes 0), on any device; detached here, never modified.

        Raises:
            ValueError: if ``maps`` is not ``(B, H, W)`` with this store's H, W, if B does not
                match the number of indices, or if an index is out of range.
        """
        if not isinstance(maps, torch.Tensor):
            raise ValueError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
        if maps.ndim != 3 or tuple(maps.shape[1:]) != (self.height, self.width):
            raise ValueError(
                f"maps must have shape (B, {self.height}, {self.width}) to match the EFM "
                f"store, got {tuple(maps.shape)}"
            )
        rows = self._rows(indices)
        if rows.numel() != maps.shape[0]:
            raise ValueError(
                f"got {rows.numel()} indices for {maps.shape[0]} maps; they must match"
            )
        # Quantise where the maps are (e.g. on the GPU) and move a quarter of the bytes.
        # nan_to_num first creates a new tensor, so the in-place steps never touch the caller's.
        quantised = (
            torch.nan_to_num(maps.detach().float(), nan=0.0)
            .clamp_(0.0, 1.0)
            .mul_(255.0)
            .round_()
            .to(device="cpu", dtype=torch.uint8)
        )
        self._maps[rows] = quantised
        self._updated[rows] = True

    def get(self, index: int) -> np.ndarray:
        """The map of one sample as ``float32`` ``(H, W)`` in [0, 1] (zeros before any update).

        Args:
            index: Row, ``0..N-1``.

        Returns:
            A new array (not a view of the shared tensor).

        Raises:
            IndexError: if ``index`` is out of range.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise IndexError(f"index must be an int, got {index!r}")
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} EFM samples")
        if not self.ready:
            return np.zeros((self.height, self.width), dtype=np.float32)
        # Division (not multiplication by 1/255) maps 255 to exactly 1.0.
        return self._maps[int(index)].numpy().astype(np.float32) / np.float32(255.0)

    def mean_map(self) -> torch.Tensor:
        """Mean of the maps of the samples updated so far, ``float32`` ``(H, W)``, for reports.

        Zeros when no sample was updated. Summed in chunks of integers, so memory stays small
        for any N and the result does not depend on summation order.
        """
        rows = torch.nonzero(self._updated).reshape(-1)
        if rows.numel() == 0:
            return torch.zeros((self.height, self.width), dtype=torch.float32)
        total = torch.zeros((self.height, self.width), dtype=torch.int64)
        for start in range(0, rows.numel(), _MEAN_MAP_CHUNK):
            chunk = self._maps[rows[start : start + _MEAN_MAP_CHUNK]]
            total += chunk.sum(dim=0, dtype=torch.int64)
        return (total.double() / (255.0 * rows.numel())).float()

    def state_dict(self) -> dict[str, Any]:
        """The stored maps and flags (copies), for checkpoints and exact resume.

        Returns:
            ``{"maps": (N, H, W) uint8, "updated": (N,) bool, "ready": bool}``.
        """
        return {
            "maps": self._maps.clone(),
            "updated": self._updated.clone(),
            "ready": self.ready,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output, copying into the existing shared tensors.

        Copying in place (rather than replacing the tensors) keeps running workers in sync.
        A state without ``"updated"`` marks every sample updated when ``"ready"`` is true.

        Raises:
            ValueError: if the maps do not have this store's ``(N, H, W)`` shape.
        """
        maps = torch.as_tensor(state["maps"])
        expected = (self.num_samples, self.height, self.width)
        if tuple(maps.shape) != expected:
            raise ValueError(
                f"EFM state has maps of shape {tuple(maps.shape)}, the store expects {expected}"
            )
        if maps.dtype != torch.uint8:
            raise ValueError(f"EFM state maps must be uint8, got {maps.dtype}")
        updated = state.get("updated")
        if updated is None:
            updated = torch.full((self.num_samples,), bool(state.get("ready", False)))
        updated = torch.as_tensor(updated, dtype=torch.bool).reshape(-1)
        if updated.numel() != self.num_samples:
            raise ValueError(
                f"EFM state has {updated.numel()} 'updated' flags, the store expects "
                f"{self.num_samples}"
            )
        self._maps.copy_(maps)
        self._updated.copy_(updated)


# --------------------------------------------------------------------------------------------
# Augmentations
# --------------------------------------------------------------------------------------------


def _probability(name: str, value: object) -> float:
    """A probability in [0, 1]; ``None`` is 0 (disabled)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _sub_params(name: str, value: object, valid: Sequence[str]) -> dict[str, Any] | None:
    """The mapping of a composite transform; ``None`` / ``0`` / ``False`` disable it."""
    if value is None or value is False or (not isinstance(value, bool) and value == 0):
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} must be a mapping with keys {', '.join(valid)} (or null to disable), "
            f"got {value!r}"
        )
    unknown = sorted(str(key) for key in value if key not in valid)
    if unknown:
        raise ValueError(f"unknown key {name}.{unknown[0]}; valid keys: {', '.join(valid)}")
    if "p" not in value:
        raise ValueError(f"{name}.p is required (the probability of the transform)")
    return dict(value)


def _limit(name: str, value: object, bound: float | None = 1.0) -> tuple[float, float]:
    """A shift limit: ``x`` (meaning ``[-x, x]``) or ``[low, high]``, within ``±bound``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = -float(value), float(value)
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    limit = math.inf if bound is None else bound
    if not (math.isfinite(low) and math.isfinite(high) and -limit <= low <= high <= limit):
        within = "be finite" if bound is None else f"lie in [-{bound:g}, {bound:g}]"
        raise ValueError(f"{name} must {within} with low <= high, got {value!r}")
    return low, high


def _std_range(name: str, value: object) -> tuple[float, float]:
    """GaussNoise's ``std_range``: ``[low, high]``, fractions of the maximum value (255)."""
    if not (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2):
        raise ValueError(f"{name} must be a [low, high] pair, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise ValueError(f"{name} must hold two numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high <= 1.0):
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= 1, got {value!r}")
    return low, high


def reseed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Give ``transform`` and all its children ONE shared random state seeded with ``seed``.

    Why not ``transform.set_random_seed(seed)`` (what ``A.Compose(seed=...)`` does): in
    albumentations 2.0.8 that seeds every child transform with the same seed, so children make
    identical draws — e.g. ``HorizontalFlip(p=0.5)`` and ``VerticalFlip(p=0.5)`` then always
    fire together and only 2 of the 4 flip combinations ever occur. One shared generator makes
    the children's draws independent and still reproducible.

    Args:
        transform: An albumentations ``Compose`` (or other composition).
        seed: Any non-negative int (larger values are folded into 64 bits).
    """
    seed = int(seed) % 2**64
    transform.seed = seed
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_transforms(
    augment: Mapping[str, Any] | None, seed: int | None = None, rgb: bool = True
) -> A.Compose | None:
    """The training augmentations of the paper's §3.1 from the ``augment`` parameters.

    Example parameters (every key optional)::

        {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5,
         "brightness_contrast": {"limit": 0.2, "p": 0.5},
         "gauss_noise": {"std_range": [0.02, 0.06], "p": 0.3}}

    * ``hflip`` / ``vflip`` / ``rotate90``: probabilities of a horizontal flip, a vertical flip
      and a rotation by a random multiple of 90° (on non-square samples a rotation swaps H
      and W, so batches would not stack: use it with square samples or tiles);
    * ``brightness_contrast``: ``limit`` (a number ``x`` for ``[-x, x]`` or a ``[low, high]``
      pair; ``brightness_limit`` / ``contrast_limit`` set one of them) and ``p``;
    * ``hue_saturation``: ``hue_shift_limit``, ``sat_shift_limit``, ``val_shift_limit``
      (albumentations' ``HueSaturationValue``; each a number or a pair) and ``p``. Colours
      only exist in RGB: with other bands (``rgb=False``) it is skipped with a warning;
    * ``gauss_noise``: ``std_range`` (``[low, high]``, fractions of 255 in albumentations 2)
      and ``p``.

    Flips, rotations, brightness/contrast and noise work on any number of bands; brightness and
    contrast change every band alike (one illumination change per sample).

    A missing key, ``0`` or ``null`` disables that transform. Geometric transforms come first,
    then brightness/contrast, then noise (so the noise level is not rescaled by the contrast).
    The pipeline treats the EFM (key ``efm``) as a second mask: it follows flips and rotations
    exactly, while brightness, contrast and noise touch the image only.

    Args:
        augment: The parameters; empty, ``None``, ``{"enabled": False}`` or all transforms
            disabled give ``None``.
        seed: Fixes the pipeline's random draws (see :func:`reseed_transform`); ``None`` draws
            fresh entropy. Global seeds are never touched. In DataLoader workers
            :class:`SegmentationSamples` reseeds from the worker's torch seed combined with it.
        rgb: Whether the samples are RGB; ``False`` skips :data:`RGB_ONLY_AUGMENTS`.

    Returns:
        An ``A.Compose`` called as ``transform(image=..., mask=..., efm=...)`` (``efm``
        optional), or ``None`` when nothing is enabled.

    Raises:
        ValueError: naming ``augment.<key>`` for an unknown key, a probability outside [0, 1] or
            another invalid value.
    """
    if not augment:
        return None
    if not isinstance(augment, Mapping):
        raise ValueError(f"augment must be a mapping, got {type(augment).__name__}")
    unknown = sorted(str(key) for key in augment if key not in AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown key augment.{unknown[0]}; valid keys: {', '.join(AUGMENT_KEYS)}")
    enabled = augment.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"augment.enabled must be true or false, got {enabled!r}")
    if not enabled:
        return None

    transforms: list[A.BasicTransform] = []
    for key, cls in (
        ("hflip", A.HorizontalFlip),
        ("vflip", A.VerticalFlip),
        ("rotate90", A.RandomRotate90),
    ):
        p = _probability(f"augment.{key}", augment.get(key))
        if p > 0:
            transforms.append(cls(p=p))

    params = _sub_params(
        "augment.brightness_contrast", augment.get("brightness_contrast"), _BRIGHTNESS_CONTRAST_KEYS
    )
    if params is not None:
        name = "augment.brightness_contrast"
        p = _probability(f"{name}.p", params["p"])
        if "limit" not in params and not {"brightness_limit", "contrast_limit"} <= params.keys():
            raise ValueError(f"{name}.limit is required (or both brightness_limit, contrast_limit)")
        limit = params.get("limit")
        brightness = params.get("brightness_limit", limit)
        contrast = params.get("contrast_limit", limit)
        # Errors name the key the value came from.
        brightness_key = "brightness_limit" if "brightness_limit" in params else "limit"
        contrast_key = "contrast_limit" if "contrast_limit" in params else "limit"
        if p > 0 and not rgb:
            logger.info(
                "%s: one brightness and contrast change per sample, applied to every band alike",
                name,
            )
        if p > 0:
            transforms.append(
                A.RandomBrightnessContrast(
                    brightness_limit=_limit(f"{name}.{brightness_key}", brightness),
                    contrast_limit=_limit(f"{name}.{contrast_key}", contrast),
                    p=p,
                )
            )

    params = _sub_params(
        "augment.hue_saturation", augment.get("hue_saturation"), _HUE_SATURATION_KEYS
    )
    if params is not None:
        name = "augment.hue_saturation"
        p = _probability(f"{name}.p", params["p"])
        limits = {
            key: _limit(f"{name}.{key}", params.get(key, 0), bound=None)
            for key in _HUE_SATURATION_KEYS[:-1]
        }
        if p > 0 and not rgb:
            logger.warning(
                "%s is skipped: hue and saturation are defined on RGB colours, and these samples "
                "are other bands (dataset.bands)",
                name,
            )
        elif p > 0:
            transforms.append(A.HueSaturationValue(**limits, p=p))

    params = _sub_params("augment.gauss_noise", augment.get("gauss_noise"), _GAUSS_NOISE_KEYS)
    if params is not None:
        name = "augment.gauss_noise"
        p = _probability(f"{name}.p", params["p"])
        if "std_range" not in params:
            raise ValueError(f"{name}.std_range is required ([low, high], fractions of 255)")
        std_range = _std_range(f"{name}.std_range", params["std_range"])
        if p > 0:
            transforms.append(A.GaussNoise(std_range=std_range, p=p))

    if not transforms:
        return None
    # "coords" (pixel numbers) follows the geometry only, for undo_dihedral; adding a target
    # never changes the random draws.
    compose = A.Compose(transforms, additional_targets={"efm": "mask", "coords": "mask"}, seed=seed)
    if seed is not None:
        reseed_transform(compose, seed)  # one shared generator, see reseed_transform
    return compose


# --------------------------------------------------------------------------------------------
# Flips and 90° rotations: which one an augmented sample went through, and its inverse
# --------------------------------------------------------------------------------------------


def apply_dihedral(x: torch.Tensor, key: int) -> torch.Tensor:
    """One of the 8 flips/rotations of the last two axes: ``key % 4`` quarter turns
    (``torch.rot90``), then a horizontal flip when ``key >= 4``."""
    turned = torch.rot90(x, key % 4, dims=(-2, -1))
    return turned.flip(-1) if key >= 4 else turned


def undo_dihedral(x: torch.Tensor, key: int) -> torch.Tensor:
    """The inverse of :func:`apply_dihedral`: ``undo_dihedral(apply_dihedral(x, k), k) == x``."""
    unflipped = x.flip(-1) if key >= 4 else x
    return torch.rot90(unflipped, -(key % 4), dims=(-2, -1))


def dihedral_key(coords: np.ndarray) -> int:
    """The key of :func:`apply_dihedral` that took the pixel numbers ``arange(H·W)`` to
    ``coords`` (as any combination of flips and 90° rotations does), read from the corners."""
    height, width = coords.shape
    corners = torch.tensor([[0, width - 1], [(height - 1) * width, height * width - 1]])
    seen = torch.from_numpy(coords[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int64)).view(2, 2)
    for key in range(8):
        if torch.equal(apply_dihedral(corners, key), seen):
            return key
    raise ValueError("the augmentation moved pixels other than by flips and 90° rotations")


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
