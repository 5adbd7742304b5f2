"""Segmentation scores from a confusion matrix (torchmetrics accumulates it).

Macro means are taken over the classes **present** — in the target or the prediction — so a
class absent from both does not count as an IoU of 0 (nor of 1).
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


def confusion_metric(num_classes: int, ignore_index: int | None) -> MulticlassConfusionMatrix:
    """A torchmetrics confusion matrix (rows: target, columns: prediction), ignore skipped."""
    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=ignore_index)


def scores(confusion: torch.Tensor) -> dict[str, float]:
    """Pixel accuracy, and macro IoU and F1 over the present classes.

    Args:
        confusion: ``(C, C)`` counts, rows = target class, columns = predicted class.

    Returns:
        ``accuracy``, ``iou`` (mIoU) and ``f1`` (macro F1).
    """
    confusion = confusion.double()
    true_positive = confusion.diag()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    union = support + predicted - true_positive
    present = union > 0
    total = confusion.sum()
    if total == 0 or not present.any():
        return {"accuracy": float("nan"), "iou": float("nan"), "f1": float("nan")}
    iou = true_positive[present] / union[present]
    f1 = 2 * true_positive[present] / (support[present] + predicted[present])
    return {
        "accuracy": float(true_positive.sum() / total),
        "iou": float(iou.mean()),
        "f1": float(f1.mean()),
    }
