"""Segmentation scores against hand-computed confusion matrices, and calibration error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from efm_seg.evaluation.metrics import (
    OVERALL_KEYS,
    PER_CLASS_KEYS,
    BinnedCalibrationError,
    SegmentationEvaluator,
    scores_from_confusion,
)

IGNORE = 255
NAN = float("nan")


def one_hot_probs(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) labels → (B, C, H, W) probabilities with all mass on the label."""
    safe = labels.clamp(0, num_classes - 1)
    return torch.nn.functional.one_hot(safe, num_classes).permute(0, 3, 1, 2).float()


def assert_close(actual: float, expected: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), actual
    else:
        assert actual == pytest.approx(expected, abs=1e-9)


def run_three_class_case() -> SegmentationEvaluator:
    # Two 1×6 images. Class 2 occurs neither in the target nor in the prediction on labelled
    # pixels; it is predicted only on the two ignored pixels, which must not count anywhere.
    targets = [torch.tensor([[[0, 0, 0, 0, 1, 1]]]), torch.tensor([[[1, 1, 1, 1, IGNORE, IGNORE]]])]
    preds = [torch.tensor([[[0, 0, 0, 1, 1, 1]]]), torch.tensor([[[1, 1, 0, 0, 2, 2]]])]
    evaluator = SegmentationEvaluator(3, ignore_index=IGNORE)
    for pred, target in zip(preds, targets, strict=True):
        evaluator.update(one_hot_probs(pred, 3), target)
    return evaluator


def test_three_class_case_with_ignore_pixels_and_an_absent_class():
    result = run_three_class_case().compute()
    # rows = target, cols = prediction, 10 labelled pixels:
    #   target 0 (4 px) → predicted 0, 0, 0, 1        → [3, 1, 0]
    #   target 1 (6 px) → predicted 1, 1, 1, 1, 0, 0  → [2, 4, 0]
    #   target 2 (0 px)                               → [0, 0, 0]
    np.testing.assert_array_equal(result.confusion, [[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    assert result.confusion.dtype == np.int64
    # TP = (3, 4, 0), support = (4, 6, 0), predicted = (5, 5, 0); weights 0.4 and 0.6.
    # precision = (3/5, 4/5, NaN), recall = (3/4, 4/6, NaN),
    # IoU = (3/(4+5−3), 4/(6+5−4), NaN) = (1/2, 4/7, NaN), F1 = (6/9, 8/11, NaN).
    expected = {
        "accuracy": 7 / 10,
        "precision": 0.4 * 3 / 5 + 0.6 * 4 / 5,  # 0.72
        "recall": 0.4 * 3 / 4 + 0.6 * 4 / 6,  # 0.7 = accuracy
        "iou": 0.4 * 1 / 2 + 0.6 * 4 / 7,
        "f1": 0.4 * 6 / 9 + 0.6 * 8 / 11,
        "miou": (1 / 2 + 4 / 7) / 2,  # 15/28 over the 2 present classes, not 15/42 over 3
        "mf1": (6 / 9 + 8 / 11) / 2,
        "mprecision": (3 / 5 + 4 / 5) / 2,
        "mrecall": (3 / 4 + 4 / 6) / 2,
        # 1-pixel-high images: every pixel is on the image border, so each band is the whole
        # mask (d = 1) and Boundary IoU equals IoU per image; summed over both images it is
        # class 0: I = 3, U = 6; class 1: I = 4, U = 7; class 2: only ignored pixels → U = 0.
        "boundary_iou": (3 / 6 + 4 / 7) / 2,
        # All confidences are 1.0 with 7 of 10 correct: ECE = |1.0 − 0.7| (the ignored pixels,
        # confidently wrong, would change it).
        "ece": 0.3,
    }
    assert list(result.overall) == list(OVERALL_KEYS)
    for key, value in expected.items():
        assert result.overall[key] == pytest.approx(value, abs=1e-6 if key == "ece" else 1e-12), key
    assert result.overall["recall"] == pytest.approx(result.overall["accuracy"], abs=1e-12)

    per_class = result.per_class
    assert [list(row) for row in per_class] == [list(PER_CLASS_KEYS)] * 3
    assert [row["class"] for row in per_class] == [0, 1, 2]
    assert [row["support"] for row in per_class] == [4, 6, 0]
    assert [row["predicted"] for row in per_class] == [5, 5, 0]
    assert [row["present"] for row in per_class] == [True, True, False]
    for key, values in {
        "precision": (3 / 5, 4 / 5, NAN),
        "recall": (3 / 4, 4 / 6, NAN),
        "iou": (1 / 2, 4 / 7, NAN),
        "f1": (6 / 9, 8 / 11, NAN),
        "boundary_iou": (3 / 6, 4 / 7, NAN),
    }.items():
        for row, value in zip(per_class, values, strict=True):
            assert_close(row[key], value)


def test_never_predicted_and_predicted_but_absent_classes():
    confusion = [
        [5, 1, 0, 2, 0],  # class 0
        [1, 3, 0, 0, 0],  # class 1
        [1, 1, 0, 0, 0],  # class 2: in the target, never predicted
        [0, 0, 0, 0, 0],  # class 3: predicted (twice), not in the target
        [0, 0, 0, 0, 0],  # class 4: absent from both
    ]
    overall, per_class = scores_from_confusion(confusion)
    # TP = (5, 3, 0, 0, 0), support = (8, 4, 2, 0, 0), predicted = (7, 5, 0, 2, 0), N = 14.
    expected_per_class = {
        "precision": (5 / 7, 3 / 5, NAN, 0 / 2, NAN),  # class 2: no prediction → undefined
        "recall": (5 / 8, 3 / 4, 0 / 2, NAN, NAN),  # class 3: no target pixel → undefined
        "iou": (5 / 10, 3 / 6, 0 / 2, 0 / 2, NAN),
        "f1": (10 / 15, 6 / 9, 0 / 2, 0 / 2, NAN),  # 2·TP / (support + predicted)
    }
    for key, values in expected_per_class.items():
        for row, value in zip(per_class, values, strict=True):
            assert_close(row[key], value)
    assert [row["present"] for row in per_class] == [True, True, True, True, False]

    expected = {
        "accuracy": 8 / 14,
        # Weighted by support 8, 4, 2 (/14); class 2's undefined precision counts as 0 and
        # class 3 weighs 0: (8·5/7 + 4·3/5 + 2·0) / 14 = 142/245.
        "precision": (8 * 5 / 7 + 4 * 3 / 5) / 14,
        "recall": (5 + 3 + 0) / 14,
        "iou": (8 * 0.5 + 4 * 0.5 + 2 * 0) / 14,
        "f1": (8 * 2 / 3 + 4 * 2 / 3 + 2 * 0) / 14,
        # Macro over the 4 present classes (class 4 left out)...
        "miou": (0.5 + 0.5 + 0 + 0) / 4,
        "mf1": (2 / 3 + 2 / 3 + 0 + 0) / 4,
        # ...and, among them, over those where the score is defined.
        "mprecision": (5 / 7 + 3 / 5 + 0) / 3,  # without class 2
        "mrecall": (5 / 8 + 3 / 4 + 0) / 3,  # without class 3
    }
    assert list(overall) == list(OVERALL_KEYS[:9])
    for key, value in expected.items():
        assert overall[key] == pytest.approx(value, abs=1e-12), key


def test_empty_confusion_gives_nan():
    overall, per_class = scores_from_confusion(np.zeros((3, 3), dtype=np.int64))
    assert all(math.isnan(value) for value in overall.values())
    assert not any(row["present"] for row in per_class)
    result = SegmentationEvaluator(2).compute()
    assert all(math.isnan(value) for value in result.overall.values())
    np.testing.assert_array_equal(result.confusion, np.zeros((2, 2)))


def test_weighted_scores_match_torchmetrics_weighted_average():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 16, 16), generator=generator)  # class 4 never in target
    pred = torch.where(
        torch.rand(target.shape, generator=generator) < 0.6,
        target,
        torch.randint(0, 5, target.shape, generator=generator),
    )
    pred[pred == 2] = 0  # class 2 never predicted
    target[0, :2] = IGNORE
    evaluator = SegmentationEvaluator(5, ignore_index=IGNORE)
    evaluator.update(one_hot_probs(pred, 5), target)
    overall = evaluator.compute().overall
    for name, metric_class in {
        "precision": MulticlassPrecision,
        "recall": MulticlassRecall,
        "f1": MulticlassF1Score,
        "iou": MulticlassJaccardIndex,
    }.items():
        metric = metric_class(num_classes=5, average="weighted", ignore_index=IGNORE)
        assert overall[name] == pytest.approx(float(metric(pred, target)), abs=1e-6), name
    assert overall["recall"] == pytest.approx(overall["accuracy"], abs=1e-12)


def test_perfect_confident_predictions_have_zero_ece():
    target = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    evaluator = SegmentationEvaluator(3)
    evaluator.update(one_hot_probs(target, 3), target)
    overall = evaluator.compute().overall
    assert overall["ece"] == 0.0
    assert overall["accuracy"] == overall["miou"] == overall["boundary_iou"] == 1.0


def test_confidence_08_with_half_correct_gives_ece_03():
    probs = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1).expand(2, 2, 4, 4).contiguous()
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[1] = 1  # predicted class is always 0: right on image 0, wrong on image 1
    evaluator = SegmentationEvaluator(2, calibration_bins=10)
    evaluator.update(probs, target)
    assert evaluator.compute().overall["ece"] == pytest.approx(0.3, abs=1e-6)


def test_binned_calibration_error_equals_torchmetrics():
    generator = torch.Generator().manual_seed(1)
    stock = MulticlassCalibrationError(4, n_bins=15, norm="l1", ignore_index=IGNORE)
    binned = BinnedCalibrationError(4, n_bins=15, norm="l1", ignore_index=IGNORE)
    for _ in range(3):
        probs = (3 * torch.randn(2, 4, 8, 8, generator=generator)).softmax(1)
        target = torch.randint(0, 4, (2, 8, 8), generator=generator)
        target[:, 0] = IGNORE
        probs[0, :, 1, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # a confidence of exactly 1
        stock.update(probs, target)
        binned.update(probs, target)
    assert float(binned.compute()) == pytest.approx(float(stock.compute()), abs=1e-6)
    for norm in ("l2", "max"):
        stock_norm = MulticlassCalibrationError(4, n_bins=5, norm=norm)
        binned_norm = BinnedCalibrationError(4, n_bins=5, norm=norm)
        stock_norm.update(probs, target.clamp(max=3))
        binned_norm.update(probs, target.clamp(max=3))
        assert float(binned_norm.compute()) == pytest.approx(float(stock_norm.compute()), abs=1e-6)


def test_reset_boundary_options_and_to_dict():
    evaluator = run_three_class_case()
    evaluator.reset()
    assert math.isnan(evaluator.compute().overall["accuracy"])
    evaluator = SegmentationEvaluator(2, boundary={"pixels": 2})
    assert evaluator.boundary_metric.band_width(100, 100) == 2
    as_dict = run_three_class_case().compute().to_dict()
    assert as_dict["confusion"] == [[3, 1, 0], [2, 4, 0], [0, 0, 0]]
    assert as_dict["overall"]["accuracy"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="channels"):
        evaluator.update(torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
