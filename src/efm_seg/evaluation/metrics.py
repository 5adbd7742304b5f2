"""Test-set metrics for semantic segmentation: confusion-matrix scores, Boundary IoU and ECE.

:class:`SegmentationEvaluator` accumulates over batches — on whatever device the batches are —
with torchmetrics (:class:`~torchmetrics.classification.MulticlassConfusionMatrix` and a binned
:class:`~torchmetrics.classification.MulticlassCalibrationError`) plus :class:`BoundaryIoU`, and
returns an :class:`EvaluationResult`. Pixels whose target is ``ignore_index`` are excluded from
every metric.

Definitions (all from the dataset-level confusion matrix ``M``, rows = target, cols = prediction;
for class ``c``: ``TP = M[c, c]``, ``support = Σ_j M[c, j]`` (target pixels),
``predicted = Σ_i M[i, c]`` (predicted pixels), ``N = Σ M``):

* per class — ``precision = TP / predicted``, ``recall = TP / support``,
  ``IoU = TP / (support + predicted − TP)``, ``F1 = 2·TP / (support + predicted)``.
  A ratio with a zero denominator is **NaN** ("undefined", never 0): precision of a class that is
  never predicted, recall of a class absent from the target, and every score of a class absent
  from both. F1 and IoU are defined as soon as the class is in the target *or* the prediction;
  for a class in the target that is never predicted they are 0 (F1 is the harmonic mean of
  precision and recall with the undefined precision taken as 0), as is recall.
* ``present`` — the class occurs in the target or the prediction (``support + predicted > 0``).
* **support-weighted** ``accuracy, precision, recall, iou, f1`` — ``Σ_c (support_c / N)·score_c``,
  the "weighted" average of torchmetrics / scikit-learn that the paper's Tables 1–2 report (there
  recall equals accuracy, which holds identically: ``Σ_c (support_c/N)(TP_c/support_c) = ΣTP/N``).
  Classes absent from the target weigh 0; an undefined precision (class never predicted) counts as
  0, as with those libraries' default ``zero_division=0``. ``accuracy = Σ TP / N``.
* **macro** ``miou, mf1, mprecision, mrecall`` — the plain mean over the *present* classes, so a
  class absent from both target and prediction is not counted (neither as 0 nor as 1; this is the
  mIoU the field reports). Undefined values are left out of their mean: ``mprecision`` averages
  the present classes that are predicted, ``mrecall`` those in the target.
* ``boundary_iou`` — Boundary IoU (:mod:`efm_seg.evaluation.boundary`), macro over the classes
  present in either contour band.
* ``ece`` — expected calibration error of the top-1 confidence (``norm="l1"``, equal-width bins on
  ``[0, 1]``, torchmetrics' binning).

Why the averaged scores are derived here instead of by torchmetrics' ``average="macro"``: with
``average="macro"`` torchmetrics (1.x) divides by all ``num_classes``, so a class absent from both
target and prediction enters the mean as 0 and drags mIoU down depending on which classes the
test tiles happen to contain. Everything is derived from one confusion matrix instead, which also
keeps all the scores mutually consistent.

ECE: stock ``MulticlassCalibrationError`` keeps one confidence and one hit flag per pixel until
``compute`` (hundreds of millions of pixels on a segmentation test set).
:class:`BinnedCalibrationError` is that metric (a subclass: same bins, same formula; tested equal)
keeping only per-bin sums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torchmetrics.classification import MulticlassCalibrationError, MulticlassConfusionMatrix

from efm_seg.evaluation.boundary import BoundaryConfig, BoundaryIoU, _bin_sums

OVERALL_KEYS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "iou",
    "f1",
    "miou",
    "mf1",
    "mprecision",
    "mrecall",
    "boundary_iou",
    "ece",
)
"""Keys of :attr:`EvaluationResult.overall`, in order."""

PER_CLASS_KEYS: tuple[str, ...] = (
    "class",
    "support",
    "predicted",
    "present",
    "precision",
    "recall",
    "iou",
    "f1",
    "boundary_iou",
)
"""Keys of each entry of :attr:`EvaluationResult.per_class`."""

DEFAULT_CALIBRATION_BINS = 15


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``, NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan)
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without a warning) when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def scores_from_confusion(
    confusion: np.ndarray | torch.Tensor | list[list[int]],
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Support-weighted, macro and per-class scores from a confusion matrix.

    Args:
        confusion: ``(C, C)`` pixel counts, rows = target class, columns = predicted class.

    Returns:
        ``(overall, per_class)``. ``overall`` has ``accuracy, precision, recall, iou, f1``
        (support-weighted) and ``miou, mf1, mprecision, mrecall`` (macro over the present
        classes) — see the module docstring for the exact definitions and NaN rules; every value
        is NaN when the matrix is empty. ``per_class`` holds one dict per class with ``class``,
        ``support``, ``predicted``, ``present``, ``precision``, ``recall``, ``iou``, ``f1``.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("confusion counts must be non-negative")

    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    union = support + predicted - true_positive
    total = matrix.sum()
    present = union > 0

    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, support)
    iou = _ratio(true_positive, union)
    f1 = _ratio(2 * true_positive, support + predicted)

    if total > 0:
        weight = support / total

        def weighted(values: np.ndarray) -> float:
            in_target = support > 0
            return float(np.sum(weight[in_target] * np.nan_to_num(values[in_target], nan=0.0)))

        overall = {
            "accuracy": float(true_positive.sum() / total),
            "precision": weighted(precision),
            "recall": weighted(recall),
            "iou": weighted(iou),
            "f1": weighted(f1),
            "miou": _nanmean(iou[present]),
            "mf1": _nanmean(f1[present]),
            "mprecision": _nanmean(precision[present]),
            "mrecall": _nanmean(recall[present]),
        }
    else:
        overall = dict.fromkeys(OVERALL_KEYS[:9], float("nan"))

    per_class = [
        {
            "class": c,
            "support": int(support[c]),
            "predicted": int(predicted[c]),
            "present": bool(present[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "iou": float(iou[c]),
            "f1": float(f1[c]),
        }
        for c in range(matrix.shape[0])
    ]
    return overall, per_class


class BinnedCalibrationError(MulticlassCalibrationError):
    """torchmetrics' multiclass calibration error with per-bin sums as state.

    Identical result to :class:`~torchmetrics.classification.MulticlassCalibrationError` (top-1
    confidence in float32, ``n_bins`` equal-width bins from ``torch.linspace(0, 1, n_bins + 1)``
    bucketised with ``right=True`` — so a confidence of exactly 1 has a bin of its own, as there —
    and the same ``l1`` / ``l2`` / ``max`` norms, without debiasing), but the state is three
    ``n_bins + 1`` vectors (pixel count, summed confidence, summed hits; float64 sums) instead of
    two per-pixel lists. States reduce by summation across processes.

    ``preds`` must be probabilities ``(N, C, ...)`` (no softmax is applied here), ``target``
    ``(N, ...)`` with ``ignore_index`` pixels skipped.
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = DEFAULT_CALIBRATION_BINS,
        norm: Literal["l1", "l2", "max"] = "l1",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes,
            n_bins=n_bins,
            norm=norm,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )
        size = n_bins + 1
        self.add_state("bin_count", torch.zeros(size, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "bin_confidence", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("bin_accuracy", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` ``(N, C, ...)`` probabilities, ``target`` ``(N, ...)`` labels."""
        if preds.dim() < 2 or preds.shape[1] != self.num_classes:
            raise ValueError(
                f"preds must be (N, {self.num_classes}, ...), got {tuple(preds.shape)}"
            )
        if target.shape != preds.shape[:1] + preds.shape[2:]:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match preds {tuple(preds.shape)}"
            )
        confidences, predictions = preds.detach().max(dim=1)
        confidences = confidences.float().reshape(-1)
        predictions = predictions.reshape(-1)
        target = target.reshape(-1).to(predictions.device)
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            confidences, predictions, target = confidences[keep], predictions[keep], target[keep]
        hits = predictions.eq(target)
        boundaries = torch.linspace(
            0, 1, self.n_bins + 1, dtype=confidences.dtype, device=confidences.device
        )
        index = torch.bucketize(confidences, boundaries, right=True) - 1
        size = self.n_bins + 1
        self.bin_count += _bin_sums(index, size).to(torch.int64)
        self.bin_confidence += _bin_sums(index, size, confidences.double())
        self.bin_accuracy += _bin_sums(index, size, hits.double())

    def compute(self) -> torch.Tensor:
        """The calibration error (NaN when no pixel was seen)."""
        count = self.bin_count.double()
        total = count.sum()
        if total == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        confidence = torch.nan_to_num(self.bin_confidence / count)
        accuracy = torch.nan_to_num(self.bin_accuracy / count)
        proportion = count / total
        gap = (accuracy - confidence).abs()
        if self.norm == "l1":
            return torch.sum(gap * proportion)
        if self.norm == "max":
            return gap.max()
        return torch.sqrt(torch.sum(gap**2 * proportion))


@dataclass
class EvaluationResult:
    """Scores of a segmentation test set (see the :mod:`module <efm_seg.evaluation.metrics>`
    docstring for the definitions).

    Attributes:
        confusion: ``(C, C)`` int64 pixel counts, rows = target class, columns = prediction.
        overall: the keys of :data:`OVERALL_KEYS` — support-weighted ``accuracy, precision,
            recall, iou, f1``; macro-over-present ``miou, mf1, mprecision, mrecall``;
            ``boundary_iou`` (macro over classes in either band); ``ece``.
        per_class: one dict per class with the keys of :data:`PER_CLASS_KEYS`; NaN marks an
            undefined score.
    """

    confusion: np.ndarray
    overall: dict[str, float]
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python containers (lists, floats, ints), e.g. for a JSON dataset.

        NaN stays ``float('nan')`` (Python's ``json`` writes it as ``NaN``).
        """
        return {
            "overall": dict(self.overall),
            "per_class": [dict(row) for row in self.per_class],
            "confusion": self.confusion.tolist(),
        }


class SegmentationEvaluator:
    """Accumulate segmentation metrics over batches of probabilities; device-agnostic.

    The torchmetrics states and the Boundary IoU counters follow the device of the batches given
    to :meth:`update`; :meth:`compute` returns NumPy / Python values.

    Args:
        num_classes: number of classes ``C``.
        ignore_index: target value excluded from every metric (``None``: none).
        boundary: band width of Boundary IoU — a :class:`BoundaryConfig`, a mapping with its
            fields (``dilation_ratio``, ``pixels``; e.g. from a parameters file), or ``None`` for
            the default 2 % of the image diagonal.
        calibration_bins: number of ECE bins.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        boundary: BoundaryConfig | Mapping[str, Any] | None = None,
        calibration_bins: int = DEFAULT_CALIBRATION_BINS,
    ) -> None:
        if boundary is None:
            boundary = BoundaryConfig()
        elif isinstance(boundary, Mapping):
            boundary = BoundaryConfig(**boundary)
        elif not isinstance(boundary, BoundaryConfig):
            raise TypeError(
                f"boundary must be a BoundaryConfig, a mapping or None, got {boundary!r}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_config = boundary
        self.confusion_metric = MulticlassConfusionMatrix(
            num_classes=num_classes, ignore_index=ignore_index
        )
        self.calibration_metric = BinnedCalibrationError(
            num_classes, n_bins=calibration_bins, norm="l1", ignore_index=ignore_index
        )
        self.boundary_metric = BoundaryIoU(
            num_classes,
            ignore_index=ignore_index,
            dilation_ratio=boundary.dilation_ratio,
            pixels=boundary.pixels,
        )
        self._seen = False

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.confusion_metric.reset()
        self.calibration_metric.reset()
        self.boundary_metric.reset()
        self._seen = False

    @torch.no_grad()
    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``probs`` ``(B, C, H, W)`` class probabilities, ``target`` ``(B, H, W)``.

        The prediction is ``probs.argmax(1)``; ``target`` is moved to ``probs``' device.
        """
        if not isinstance(probs, torch.Tensor) or probs.dim() != 4 or not probs.is_floating_point():
            raise ValueError("probs must be a floating-point (B, C, H, W) tensor")
        if probs.shape[1] != self.num_classes:
            raise ValueError(f"probs has {probs.shape[1]} channels, expected {self.num_classes}")
        if target.shape != probs.shape[:1] + probs.shape[2:]:
            raise ValueError(
                f"target must be (B, H, W) = {(probs.shape[0], *probs.shape[2:])}, "
                f"got {tuple(target.shape)}"
            )
        if target.is_floating_point():
            raise ValueError(f"target must hold integer labels, got {target.dtype}")
        device = probs.device
        target = target.to(device=device, dtype=torch.long)
        for metric in (self.confusion_metric, self.calibration_metric):
            if metric.device != device:
                metric.to(device)
        pred = probs.argmax(dim=1)
        self.confusion_metric.update(pred, target)
        self.calibration_metric.update(probs, target)
        self.boundary_metric.update(pred, target)
        self._seen = True

    def compute(self) -> EvaluationResult:
        """Scores over everything seen since construction or the last :meth:`reset`."""
        if self._seen:
            confusion = self.confusion_metric.compute().cpu().numpy().astype(np.int64)
            ece = float(self.calibration_metric.compute())
        else:
            confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
            ece = math.nan
        overall, per_class = scores_from_confusion(confusion)
        boundary_macro, boundary_per_class = self.boundary_metric.compute()
        overall["boundary_iou"] = boundary_macro
        overall["ece"] = ece
        for row, value in zip(per_class, boundary_per_class, strict=True):
            row["boundary_iou"] = float(value)
        return EvaluationResult(
            confusion=confusion,
            overall={key: overall[key] for key in OVERALL_KEYS},
            per_class=[{key: row[key] for key in PER_CLASS_KEYS} for row in per_class],
        )
