"""``training.criterion`` (the loss of a stage without EFM: eq. 6, OHEM, smp's focal and
Lovász) and ``training.checkpoint`` (the best validation epoch, or the last)."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from efm_seg.efm import EFMLoss
from efm_seg.evaluation.calibration import collect_logits, fit_temperature, nll
from efm_seg.models import model_from_checkpoint
from efm_seg.training.config import ConfigError
from efm_seg.training.criteria import TopKCrossEntropy, build_criterion
from tests.training.test_trainer import (
    CLASSES,
    IGNORE,
    make_asymmetric_store,
    make_config,
    make_trainer,
    val_ids,
)

LOSS = {"lambda_ce": 0.7, "lambda_dice": 1.3, "label_smoothing": 0.05}


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, len(CLASSES), 16, 16, generator=generator)
    target = torch.randint(0, len(CLASSES), (2, 16, 16), generator=generator)
    target[:, :3] = IGNORE
    return logits, target


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_asymmetric_store(tmp_path_factory.mktemp("criteria") / "encoded")


def criterion(name: str, **settings):
    params = {"name": name, "topk_ratio": 0.25, "focal_gamma": 2.0, **settings}
    return build_criterion(params, len(CLASSES), IGNORE, LOSS)


def test_ce_dice_is_eq6_with_the_configured_lambdas():
    logits, target = batch()
    eq6 = EFMLoss(len(CLASSES), ignore_index=IGNORE, gamma=0.0, topk_ratio=1.0, **LOSS)
    assert criterion("ce_dice")(logits, target) == eq6(logits, target)


def test_ohem_is_the_mean_of_each_images_hardest_pixels():
    logits, target = batch()
    pixels = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    # Ratio 1: the plain mean over the valid pixels.
    full = criterion("ohem", topk_ratio=1.0)(logits, target)
    assert full == pytest.approx(float(pixels[target != IGNORE].mean()), rel=1e-6)
    # Ratio 0.25: per image, the mean of its ceil(0.25 · n) largest valid losses.
    expected = []
    for image_pixels, image_target in zip(pixels, target, strict=True):
        valid = image_pixels[image_target != IGNORE]
        k = -(-valid.numel() // 4)
        expected.append(valid.topk(k).values)
    kept = torch.cat(expected)
    assert criterion("ohem")(logits, target) == pytest.approx(float(kept.mean()), rel=1e-6)
    assert isinstance(criterion("ohem"), TopKCrossEntropy)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("focal", smp.losses.FocalLoss("multiclass", gamma=3.0, ignore_index=IGNORE)),
        ("lovasz", smp.losses.LovaszLoss("multiclass", ignore_index=IGNORE)),
    ],
)
def test_focal_and_lovasz_are_smps_and_never_read_ignored_pixels(name, reference):
    logits, target = batch()
    loss = criterion(name, focal_gamma=3.0)
    assert loss(logits, target, None) == pytest.approx(float(reference(logits, target)))
    changed = logits.clone()
    changed[:, :, :3] = 100.0  # only where the target is ignored
    assert loss(changed, target) == pytest.approx(float(loss(logits, target)), rel=1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"criterion": {"name": "dice"}}, r"efm.training.criterion.name"),
        ({"criterion": {"name": "ohem", "topk_ratio": 0}}, r"criterion.topk_ratio"),
        ({"criterion": {"name": "focal", "focal_gamma": -1.0}}, r"criterion.focal_gamma"),
        ({"criterion": {"name": "focal", "alpha": 0.5}}, r"criterion.alpha"),
        ({"checkpoint": "best_loss"}, r"efm.training.checkpoint"),
        # The criterion is the loss of stages without EFM: refused where the EFM loss is used.
        (
            {"efm": {"enabled": True}, "criterion": {"name": "lovasz"}},
            r"criterion.name: lovasz is the loss of a stage trained without EFM",
        ),
    ],
)
def test_bad_criteria_are_refused_naming_the_parameter(changes, message):
    from tests.training.test_config import stage_config

    with pytest.raises(ConfigError, match=message):
        stage_config(**changes)


def falling_scores(trainer, monkeypatch):
    """Make validation IoU fall epoch by epoch: the best epoch is the first."""
    validate, scores = trainer._validate, iter([0.9, 0.5, 0.1])

    def falling():
        return {**validate(), "iou": next(scores)}

    monkeypatch.setattr(trainer, "_validate", falling)


@pytest.mark.parametrize(("selection", "kept"), [("last", 3), ("best", 1)])
def test_a_stage_trains_with_its_criterion_and_keeps_the_chosen_epoch(
    store,
    monkeypatch,
    selection,
    kept,
):
    config = make_config(
        epochs=3, criterion={"name": "lovasz"}, checkpoint=selection, efm={"enabled": False}
    )
    trainer = make_trainer(store, config)
    assert isinstance(trainer.criterion.loss, smp.losses.LovaszLoss)
    falling_scores(trainer, monkeypatch)
    result = trainer.fit()
    checkpoint = result.checkpoint
    assert checkpoint["epoch"] == kept
    assert checkpoint["metrics"]["val_iou"] == result.history[kept - 1]["val_iou"]
    assert checkpoint["config"]["criterion"]["name"] == "lovasz"
    assert checkpoint["config"]["checkpoint"] == selection
    # Validation stays eq. 6, comparable across criteria.
    assert isinstance(trainer.baseline_criterion, EFMLoss)
    # The temperature fitted on the whole validation split, for the checkpoint's weights.
    model = model_from_checkpoint(checkpoint).eval()
    logits, labels = collect_logits(model, trainer.full_val_loader, "cpu", IGNORE)
    assert len(labels) == sum(int((store.read(i)[1] != IGNORE).sum()) for i in val_ids(store))
    assert checkpoint["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    calibration = checkpoint["calibration"]
    assert calibration["val_nll_scaled"] <= calibration["val_nll"]
    assert calibration["val_nll"] == pytest.approx(nll(logits, labels), rel=1e-5)
