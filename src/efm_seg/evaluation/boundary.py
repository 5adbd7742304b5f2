"""Boundary IoU (Cheng et al., CVPR 2021), accumulated per class over a segmentation test set.

For a binary mask ``M`` the *inner contour band* of width ``d`` is ``M_d ∩ M = M − erode(M, d)``:
the pixels of ``M`` within distance ``d`` of its contour. Boundary IoU of a ground-truth mask
``G`` and a predicted mask ``P`` is::

    BIoU(G, P) = |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|

Choices, following the reference implementation (``boundary_iou/utils/boundary_utils.py``,
``mask_to_boundary``, of github.com/bowenc0221/boundary-iou-api):

* **Band width.** ``d = max(1, round(dilation_ratio × image diagonal))`` pixels, with
  ``dilation_ratio = 0.02`` by default; ``pixels=`` gives ``d`` directly instead.
* **Distance.** The reference erodes with a 3×3 square kernel iterated ``d`` times, which equals
  one erosion by a ``(2d+1)×(2d+1)`` square: chessboard (L∞) distance. This module does exactly
  that erosion, as a separable max-pool of the mask's complement (two 1-D pools of length
  ``2d+1``, so the cost does not grow with ``d²``).
* **Image border.** The reference pads the mask with zeros before eroding, so a mask cut by the
  image border has a contour there: border pixels of ``M`` are band pixels. Same here (the
  complement is padded with ones).

All classes of a label map are done at once (:func:`label_boundary`): a pixel of class ``c`` is in
the band of ``labels == c`` iff its ``(2d+1)²`` window holds another label or leaves the image, so
one min- and one max-pool of the label map give every class's band (tested equal to
:func:`boundary_band` of each class mask, and to the reference's iterated 3×3 erosion).

Multi-class (semantic) segmentation: for every class ``c``, ``G = (target == c)`` and
``P = (pred == c)``; intersection and union pixel counts are summed over all images and
``BIoU_c = I_c / U_c`` — a dataset-level score, like the confusion-matrix IoU. The macro score is
the mean over the classes with ``U_c > 0``: a class in neither band (absent from both target and
prediction) is not counted, as neither 0 nor 1.

Ignore pixels (``target == ignore_index``) belong to no class of the ground truth (so they cut
holes in ``G``, whose rims are contour, exactly as an unlabelled region would) and are excluded
from both counts: whatever is predicted there counts neither in the intersection nor in the union.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_DILATION_RATIO = 0.02
"""Band width as a fraction of the image diagonal (Cheng et al.'s default)."""


@dataclass(frozen=True)
class BoundaryConfig:
    """How wide the contour band is: ``pixels`` if given, else ``dilation_ratio × diagonal``."""

    dilation_ratio: float = DEFAULT_DILATION_RATIO
    pixels: int | None = None

    def __post_init__(self) -> None:
        if self.pixels is not None and (isinstance(self.pixels, bool) or self.pixels < 1):
            raise ValueError(f"pixels must be a positive integer or None, got {self.pixels!r}")
        if not (math.isfinite(self.dilation_ratio) and self.dilation_ratio >= 0):
            raise ValueError(
                f"dilation_ratio must be a finite non-negative number, got {self.dilation_ratio!r}"
            )


def band_width(
    height: int,
    width: int,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    pixels: int | None = None,
) -> int:
    """Band width ``d`` in pixels for an image of ``height × width``.

    ``pixels`` when given; otherwise ``max(1, round(dilation_ratio × sqrt(h² + w²)))`` — Python's
    ``round`` (half to even), as in the reference.
    """
    if pixels is not None:
        return int(pixels)
    return max(1, round(dilation_ratio * math.hypot(height, width)))


def boundary_band(mask: torch.Tensor, d: int) -> torch.Tensor:
    """Inner contour band of width ``d`` of each mask: ``mask − erode(mask, (2d+1)×(2d+1) square)``.

    Args:
        mask: boolean (or 0/1) tensor ``(..., H, W)``, typically ``(B, H, W)``.
        d: band width in pixels (``>= 1``); pixels of the mask within chessboard distance ``d``
            of a non-mask pixel — or of the image border — are in the band.

    Returns:
        A boolean tensor shaped like ``mask``.
    """
    if d < 1:
        raise ValueError(f"band width d must be >= 1, got {d}")
    if mask.dim() < 2:
        raise ValueError(f"mask must be (..., H, W), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    height, width = mask.shape[-2:]
    if mask.numel() == 0:
        return mask.clone()
    # The complement, padded with 1: outside the image counts as "not mask" (reference behaviour).
    complement = (~mask).reshape(-1, 1, height, width).float()
    complement = F.pad(complement, (d, d, d, d), value=1.0)
    kernel = 2 * d + 1
    near_outside = F.max_pool2d(complement, kernel_size=(1, kernel), stride=1)
    near_outside = F.max_pool2d(near_outside, kernel_size=(kernel, 1), stride=1)
    return mask & (near_outside.reshape(mask.shape) > 0)


def label_boundary(labels: torch.Tensor, d: int) -> torch.Tensor:
    """Contour bands of every class of a label map at once.

    A pixel is marked when its ``(2d+1)×(2d+1)`` window holds another label or reaches past the
    image border. For a pixel of class ``c`` that is exactly "in the inner band of the mask
    ``labels == c``", so ``label_boundary(labels, d) & (labels == c)`` equals
    ``boundary_band(labels == c, d)`` for every ``c`` — with one min- and one max-pool of the label
    map instead of one erosion per class.

    Args:
        labels: integer label map ``(..., H, W)`` with values ``>= 0`` (an ignore value is just
            another label here).
        d: band width in pixels (``>= 1``).
    """
    if d < 1:
        raise ValueError(f"band width d must be >= 1, got {d}")
    if labels.dim() < 2:
        raise ValueError(f"labels must be (..., H, W), got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        return torch.zeros_like(labels, dtype=torch.bool)
    height, width = labels.shape[-2:]
    values = labels.reshape(-1, 1, height, width).float()
    # -1 outside the image: a label no pixel has, so the border is contour (reference behaviour).
    values = F.pad(values, (d, d, d, d), value=-1.0)
    kernel = 2 * d + 1

    def window_max(x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, kernel_size=(1, kernel), stride=1)
        return F.max_pool2d(x, kernel_size=(kernel, 1), stride=1)

    differs = window_max(values) != -window_max(-values)
    return differs.reshape(labels.shape)


def _bin_sums(
    index: torch.Tensor,
    size: int,
    weights: torch.Tensor | None = None,
    *,
    native: bool | None = None,
) -> torch.Tensor:
    """``torch.bincount(index, weights, minlength=size)[:size]`` on any device.

    ``native=None`` uses ``bincount`` on CPU, and on CUDA unless deterministic algorithms are
    enabled (where it would raise); elsewhere (e.g. MPS, which lacks it) and with
    ``native=False``, one masked sum per bin. Indices ``>= size`` are dropped.
    """
    if native is None:
        device = index.device.type
        native = device == "cpu" or (
            device == "cuda" and not torch.are_deterministic_algorithms_enabled()
        )
    if native:
        return torch.bincount(index, weights=weights, minlength=size)[:size]
    if weights is None:
        return torch.stack([(index == b).sum() for b in range(size)])
    return torch.stack([torch.where(index == b, weights, 0).sum() for b in range(size)])


class BoundaryIoU:
    """Per-class Boundary IoU over a dataset: band intersections and unions summed over images.

    Device-agnostic: the counters follow the device of the batches given to ``update``, which
    takes label maps (``argmax`` of the probabilities); ``compute`` returns the macro score over
    the classes with a non-empty band union and the per-class scores (``NaN`` where the union is
    empty).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        dilation_ratio: float = DEFAULT_DILATION_RATIO,
        pixels: int | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.config = BoundaryConfig(dilation_ratio=dilation_ratio, pixels=pixels)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated counts."""
        self.intersection: torch.Tensor | None = None
        self.union: torch.Tensor | None = None

    def band_width(self, height: int, width: int) -> int:
        """``d`` in pixels for an image of this size (see :func:`band_width`)."""
        return band_width(height, width, self.config.dilation_ratio, self.config.pixels)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of label maps, ``pred`` and ``target`` both ``(B, H, W)`` integers."""
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                "pred and target must both be (B, H, W); got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError("pred and target must be integer label maps")
        device = target.device
        target = target.long()
        pred = pred.to(device=device, dtype=torch.long)
        if self.intersection is None or self.union is None or self.intersection.device != device:
            zeros = torch.zeros(self.num_classes, dtype=torch.int64, device=device)
            self.intersection = zeros if self.intersection is None else self.intersection.to(device)
            self.union = zeros.clone() if self.union is None else self.union.to(device)
        d = self.band_width(*target.shape[-2:])
        counted = (target >= 0) & (target < self.num_classes)  # ignore pixels (and strays) out
        if self.ignore_index is not None:
            counted &= target != self.ignore_index
        # The band of G_c (of P_c) is the set of label-map band pixels that have class c.
        truth_band = label_boundary(target, d) & counted
        pred_band = label_boundary(pred, d) & counted & (pred >= 0) & (pred < self.num_classes)
        both = truth_band & pred_band & (target == pred)
        truth = self._count(target, truth_band)
        predicted = self._count(pred, pred_band)
        intersection = self._count(target, both)
        self.intersection += intersection
        self.union += truth + predicted - intersection

    def _count(self, labels: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Pixels of each class among ``where`` (``labels`` in ``[0, C)`` there)."""
        spare = self.num_classes  # a bin for the pixels not counted, dropped by _bin_sums
        index = torch.where(where, labels, spare).reshape(-1)
        return _bin_sums(index, self.num_classes).to(torch.int64)

    def compute(self) -> tuple[float, np.ndarray]:
        """``(macro, per_class)``: per-class ``I/U`` (``NaN`` where ``U == 0``) and their mean
        over the classes with ``U > 0`` (``NaN`` when there is none)."""
        per_class = np.full(self.num_classes, np.nan)
        if self.intersection is None or self.union is None:
            return float("nan"), per_class
        intersection = self.intersection.cpu().numpy().astype(np.float64)
        union = self.union.cpu().numpy().astype(np.float64)
        counted = union > 0
        per_class[counted] = intersection[counted] / union[counted]
        macro = float(per_class[counted].mean()) if counted.any() else float("nan")
        return macro, per_class
