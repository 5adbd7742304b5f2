import math

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from efm_seg.training.trainer import epoch_scores as scores


def test_scores_from_a_hand_computed_confusion_matrix():
    # rows = target, columns = prediction; class 2 absent from both target and prediction
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    result = scores(confusion)
    assert result["accuracy"] == 5 / 6
    # IoU: class 0 = 3 / (4 + 3 - 3) = 3/4, class 1 = 2 / (2 + 3 - 2) = 2/3; class 2 not counted
    assert math.isclose(result["iou"], (3 / 4 + 2 / 3) / 2)
    # F1: class 0 = 6 / (4 + 3), class 1 = 4 / (2 + 3)
    assert math.isclose(result["f1"], (6 / 7 + 4 / 5) / 2)


def test_confusion_metric_skips_ignore_pixels():
    metric = MulticlassConfusionMatrix(2, ignore_index=255)
    metric.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 255, 1]]))
    assert metric.compute().tolist() == [[1, 0], [0, 1]]


def test_empty_confusion_gives_nan_not_an_error():
    assert math.isnan(scores(torch.zeros(3, 3))["iou"])
