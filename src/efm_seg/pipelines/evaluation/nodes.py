"""Evaluation nodes: score a checkpoint on the test split; put the stages side by side."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.evaluation import SegmentationEvaluator, predict_probs
from efm_seg.parameters import (
    DatasetParams,
    EvaluationParams,
    as_mapping,
    describe,
    resolve_device,
)
from efm_seg.pipelines.training.nodes import split_ids
from efm_seg.training.data import SegmentationSamples
from efm_seg.training.models import model_from_checkpoint

logger = logging.getLogger(__name__)


def evaluate_stage(
    stage: str,
    checkpoint: dict[str, Any],
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
    evaluation: EvaluationParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score one stage's best checkpoint on the test split, without and with TTA.

    Args:
        stage: The stage's name.
        checkpoint: ``<stage>.best_checkpoint``.
        samples: The encoded samples.
        split: The split table.
        dataset: ``params:dataset`` (the classes must match the checkpoint's).
        evaluation: ``params:evaluation``: ``split`` (default ``test``), ``batch_size``,
            ``device``, ``tta`` (also score with test-time augmentation), ``boundary``
            (``dilation_ratio`` or ``pixels``), ``calibration_bins``, ``qualitative.count``.

    Returns:
        Overall metrics (one row per TTA setting), per-class metrics, and predictions for the
        first ``qualitative.count`` test images plus the confusion matrices.
    """
    try:
        settings = EvaluationParams.model_validate(evaluation)
    except ValidationError as exc:
        raise ValueError(describe(exc, "evaluation")) from None
    scheme = LabelScheme.from_params(as_mapping(dataset))
    if list(checkpoint.get("classes", [])) != list(scheme.classes):
        raise ValueError(
            f"{stage}: the checkpoint was trained on classes {checkpoint.get('classes')}, but "
            f"dataset.classes is {list(scheme.classes)}"
        )
    subset = settings.split
    ids = split_ids(split, samples).get(subset)
    if not ids:
        raise ValueError(f"evaluation.split: the split table has no {subset!r} samples")
    device = resolve_device(settings.device)
    model = model_from_checkpoint(checkpoint).to(device)
    modes = [False, True] if settings.tta else [False]
    evaluators = {
        tta: SegmentationEvaluator(
            scheme.num_classes,
            ignore_index=scheme.ignore_index,
            boundary=settings.boundary.model_dump(),
            calibration_bins=settings.calibration_bins,
        )
        for tta in modes
    }
    count = settings.qualitative.count
    shown = sorted(ids)[:count]
    loader = DataLoader(
        SegmentationSamples(samples, shown + [i for i in ids if i not in set(shown)]),
        batch_size=settings.batch_size,
    )
    predictions: list[np.ndarray] = []
    with torch.no_grad():
        for batch in loader:
            images = batch["image"].to(device)
            masks = batch["mask"].to(device)
            for tta, evaluator in evaluators.items():
                probs = predict_probs(model, images, tta=tta)
                evaluator.update(probs, masks)
                if tta == modes[-1] and len(predictions) < len(shown):
                    take = len(shown) - len(predictions)
                    labels = probs.argmax(dim=1)[:take].to(torch.uint8).cpu().numpy()
                    predictions.extend(labels)

    rows, per_class, confusions = [], [], {}
    for tta, evaluator in evaluators.items():
        result = evaluator.compute()
        rows.append(
            {
                "stage": stage,
                "tta": tta,
                **result.overall,
                "images": len(ids),
                "checkpoint_epoch": checkpoint.get("epoch"),
            }
        )
        for entry in result.per_class:
            per_class.append(
                {"stage": stage, "tta": tta, "class_name": scheme.classes[entry["class"]], **entry}
            )
        confusions[f"confusion_tta_{str(tta).lower()}"] = np.asarray(result.confusion)
        logger.info(
            "%s on %s (%d images, TTA %s): accuracy %.4f, IoU %.4f, mIoU %.4f, F1 %.4f, "
            "boundary IoU %.4f, ECE %.4f",
            stage, subset, len(ids), "on" if tta else "off", result.overall["accuracy"],
            result.overall["iou"], result.overall["miou"], result.overall["f1"],
            result.overall["boundary_iou"], result.overall["ece"],
        )  # fmt: skip
    outputs = {
        "ids": np.array(shown, dtype=str),
        "predictions": np.stack(predictions) if predictions else np.zeros((0, 1, 1), np.uint8),
        **confusions,
    }
    return pd.DataFrame(rows), pd.DataFrame(per_class), outputs


def stage_evaluator(stage: str):
    """:func:`evaluate_stage` bound to one stage, as a plain function named ``evaluate_<stage>``."""

    def evaluate(
        checkpoint: dict[str, Any],
        samples: SampleStore,
        split: pd.DataFrame,
        dataset: DatasetParams,
        evaluation: EvaluationParams,
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
        return evaluate_stage(stage, checkpoint, samples, split, dataset, evaluation)

    evaluate.__name__ = evaluate.__qualname__ = f"evaluate_{stage}"
    evaluate.__doc__ = f"Evaluate the {stage} stage's best checkpoint (see evaluate_stage)."
    return evaluate


def combine_stages(*tables: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack the stages' overall and per-class tables (the first half are overall tables)."""
    half = len(tables) // 2
    return (
        pd.concat(tables[:half], ignore_index=True),
        pd.concat(tables[half:], ignore_index=True),
    )
