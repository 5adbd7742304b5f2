"""Post-hoc temperature scaling: the fit recovers a known temperature and lowers the NLL, the
predictions never change, and evaluation reports ECE and NLL before and after it with the
checkpoint's own temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from efm_seg.evaluation import predict_probs
from efm_seg.evaluation.calibration import (
    BOUNDS,
    CalibrationScores,
    collect_logits,
    fit_temperature,
    nll,
)
from efm_seg.evaluation.metrics import SegmentationEvaluator
from efm_seg.evaluation.scoring import evaluate_stage
from efm_seg.loading import SegmentationSamples
from efm_seg.models import model_from_checkpoint
from tests.conftest import DATASET_PARAMS
from tests.pipelines.evaluation.test_nodes import (  # noqa: F401  (module fixtures)
    CLASSES,
    EVALUATION,
    RUN_INFO,
    checkpoint,
    split,
    store,
)


def sampled(temperature: float, count: int = 200_000, classes: int = 5):
    """Logits, and labels drawn from ``softmax(logits / temperature)``: the fit should find it."""
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(count, classes, generator=generator)
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=generator)[:, 0]
    return logits, labels


@pytest.mark.parametrize("true", [0.5, 2.5])
def test_the_fit_recovers_the_temperature_that_made_the_labels(true):
    logits, labels = sampled(true)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true, rel=0.03)
    assert nll(logits, labels, fitted) < nll(logits, labels)


def test_degenerate_inputs_give_one_or_a_bounded_temperature():
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0
    # Every prediction right: the NLL keeps falling as T shrinks; the fit stays within bounds.
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]]).repeat(100, 1)
    labels = torch.tensor([0, 1]).repeat(100)
    fitted = fit_temperature(logits, labels)
    assert BOUNDS[0] <= fitted < 1.0 and nll(logits, labels, fitted) < nll(logits, labels)


def test_temperature_changes_the_confidence_never_the_prediction():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1)
    images = torch.randn(2, 3, 16, 16)
    for tta in (False, True):
        plain = predict_probs(model, images, tta=tta)
        cooled = predict_probs(model, images, tta=tta, temperature=2.0)
        if not tta:
            torch.testing.assert_close(cooled, F.softmax(model(images) / 2.0, dim=1))
            assert torch.equal(plain.argmax(1), cooled.argmax(1))
        assert cooled.max(1).values.mean() < plain.max(1).values.mean()


def test_calibration_scores_are_the_evaluations_ece_and_the_mean_nll():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, :2] = 255
    probs = logits.softmax(1)
    scores = CalibrationScores(3, 255, bins=7)
    scores.update(probs, target)
    evaluator = SegmentationEvaluator(3, ignore_index=255, calibration_bins=7)
    evaluator.update(probs, target)
    got = scores.compute()
    assert got["ece"] == pytest.approx(evaluator.compute().overall["ece"])
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert got["nll"] == pytest.approx(float(expected), rel=1e-5)
    assert math.isnan(CalibrationScores(3, 255, 7).compute()["nll"])


def test_evaluation_reports_calibration_with_the_checkpoints_temperature(
    store,  # noqa: F811
    split,  # noqa: F811
    checkpoint,  # noqa: F811
):
    scaled = {**checkpoint, "temperature": 1.7}
    overall, _, _ = evaluate_stage(
        "efm", scaled, store, split, DATASET_PARAMS, {**EVALUATION, "tta": False}, RUN_INFO
    )
    ids = sorted(split.loc[split["split"] == "val", "sample_id"])
    model = model_from_checkpoint(checkpoint)
    loader = DataLoader(SegmentationSamples(store, ids), batch_size=2)
    logits, labels = collect_logits(model, loader, "cpu", 255)
    (row,) = overall.to_dict("records")
    assert row["temperature"] == 1.7
    assert row["nll"] == pytest.approx(nll(logits, labels), rel=1e-4)
    assert row["nll_scaled"] == pytest.approx(nll(logits, labels, 1.7), rel=1e-4)
    unscaled, _, _ = evaluate_stage(
        "efm", checkpoint, store, split, DATASET_PARAMS, {**EVALUATION, "tta": False}, RUN_INFO
    )
    (before,) = unscaled.to_dict("records")
    assert before["temperature"] == 1.0  # a checkpoint from before temperatures: unscaled
    assert before["ece_scaled"] == pytest.approx(before["ece"])
    assert row["miou"] == before["miou"]  # the same predictions
