"""Augmentations: one albumentations pipeline that moves the image, the mask and the EFM together
(paper §3.1), built from the ``augment`` parameters, and the flips and 90° rotations a sample went
through, undone for the per-step maps."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch

logger = logging.getLogger(__name__)


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
