"""Scoring a checkpoint on a split of the samples, without and with TTA, after checking that it
was trained on the current data: the library functions behind the evaluation nodes (and the
study's cells)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from efm_seg.basics.devices import resolve_device
from efm_seg.basics.lineage import (
    DataLineage,
    LineageError,
    check_same_data,
    check_stages,
    checkpoint_lineage,
    config_fingerprint,
)
from efm_seg.basics.mappings import as_mapping
from efm_seg.basics.provenance import run_id_of
from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.data.split import data_lineage, split_ids
from efm_seg.evaluation.calibration import CalibrationScores
from efm_seg.evaluation.metrics import SegmentationEvaluator
from efm_seg.evaluation.tta import predict_probs
from efm_seg.loading import SegmentationSamples, checkpoint_normalization
from efm_seg.models import model_from_checkpoint
from efm_seg.parameters import DatasetParams, EvaluationParams, describe

logger = logging.getLogger(__name__)


def stage_lineage(
    stage: str, checkpoint: dict[str, Any], current: DataLineage, scheme: LabelScheme
) -> dict[str, str]:
    """The lineage of one stage's checkpoint, refused unless it was trained on the current data.

    Returns:
        ``checkpoint_run``, ``init_stage`` and ``init_run`` (empty when it started from new
        weights) and the data fingerprints ``store``, ``split``, ``classes``.
    """
    if list(checkpoint.get("classes", [])) != list(scheme.classes):
        raise ValueError(
            f"{stage}: the checkpoint was trained on classes {checkpoint.get('classes')}, but "
            f"dataset.classes is {list(scheme.classes)}"
        )
    lineage = checkpoint_lineage(stage, checkpoint, "the checkpoint")
    check_same_data(
        stage,
        lineage,
        current,
        "the checkpoint",
        f"Train the stage again on the current data (kedro run --pipelines {stage}), or evaluate "
        f"a checkpoint made from it: --load-versions {stage}.best_checkpoint:<run id>",
    )
    init = lineage.get("init") or {}
    return {
        "checkpoint_run": str(lineage["run_id"]),
        "init_stage": str(init.get("stage", "")),
        "init_run": str(init.get("run_id", "")),
        **current.as_dict(),
    }


def check_lineage(
    checkpoints: Mapping[str, dict[str, Any]],
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
) -> dict[str, dict[str, str]]:
    """Check, before any model is scored, that the checkpoints share one lineage.

    Each must be trained on the current store, split and classes, and each stage that started
    from a previous stage's checkpoint must have started from the one compared here.

    Args:
        checkpoints: Each model's checkpoint, by name (the stages and ``baseline_equal``).

    Returns:
        Each model's lineage record (see :func:`stage_lineage`).

    Raises:
        LineageError: naming the stages, their runs (= versions) and what differs.
    """
    scheme = LabelScheme.from_params(as_mapping(dataset))
    current = data_lineage(samples, split, scheme)
    stages = {
        stage: stage_lineage(stage, checkpoint, current, scheme)
        for stage, checkpoint in checkpoints.items()
    }
    check_stages(stages, "evaluation")
    return stages


def evaluate_stage(
    stage: str,
    checkpoint: dict[str, Any],
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
    evaluation: EvaluationParams,
    run_info: dict[str, Any],
    checked: dict[str, dict[str, str]] | None = None,
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
        run_info: This run's ``run_info`` (its id is recorded as the evaluation's run).
        checked: The output of :func:`check_lineage`, when the stages were checked together;
            this checkpoint must be the one checked.

    Returns:
        Overall metrics (one row per TTA setting: the scores, the NLL, ECE and NLL after
        temperature scaling with the checkpoint's ``temperature``, and the checkpoint's
        lineage: its run, the checkpoint it started from, the data fingerprints, this run, the
        device and the time taken), per-class metrics, and predictions for the first
        ``qualitative.count`` test images plus the confusion matrices (tagged with the
        checkpoint's and this run's ids).

    Raises:
        LineageError: The checkpoint was trained on other data than the current store and split.
    """
    started = time.perf_counter()
    try:
        settings = EvaluationParams.model_validate(evaluation)
    except ValidationError as exc:
        raise ValueError(describe(exc, "evaluation")) from None
    scheme = LabelScheme.from_params(as_mapping(dataset))
    run_id = run_id_of(run_info)
    lineage = stage_lineage(stage, checkpoint, data_lineage(samples, split, scheme), scheme)
    if checked is not None and checked.get(stage) != lineage:
        raise LineageError(
            f"{stage}: the checkpoint scored (run {lineage['checkpoint_run']}) is not the one "
            f"whose lineage was checked ({(checked.get(stage) or {}).get('checkpoint_run')})"
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
    # Calibration without and with the checkpoint's temperature (1.0 before it had one).
    temperature = float(checkpoint.get("temperature", 1.0))
    calibrations = {
        (tta, scaled): CalibrationScores(
            scheme.num_classes, scheme.ignore_index, settings.calibration_bins
        )
        for tta in modes
        for scaled in (False, True)
    }
    count = settings.qualitative.count
    shown = sorted(ids)[:count]
    loader = DataLoader(
        SegmentationSamples(
            samples,
            shown + [i for i in ids if i not in set(shown)],
            **checkpoint_normalization(checkpoint),
        ),
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
                calibrations[tta, False].update(probs, masks)
                scaled = predict_probs(model, images, tta=tta, temperature=temperature)
                calibrations[tta, True].update(scaled, masks)
                if tta == modes[-1] and len(predictions) < len(shown):
                    take = len(shown) - len(predictions)
                    labels = probs.argmax(dim=1)[:take].to(torch.uint8).cpu().numpy()
                    predictions.extend(labels)

    seconds = round(time.perf_counter() - started, 3)
    rows, per_class, confusions = [], [], {}
    for tta, evaluator in evaluators.items():
        result = evaluator.compute()
        plain, scaled = calibrations[tta, False].compute(), calibrations[tta, True].compute()
        rows.append(
            {
                "stage": stage,
                "tta": tta,
                **result.overall,
                "nll": plain["nll"],
                # After temperature scaling (fitted on the validation split when trained).
                "temperature": temperature,
                "ece_scaled": scaled["ece"],
                "nll_scaled": scaled["nll"],
                "images": len(ids),
                "checkpoint_epoch": checkpoint.get("epoch"),
                **lineage,
                "evaluation_run": run_id,
                "evaluation": config_fingerprint(settings.model_dump()),
                "device": str(device),
                "seconds": seconds,
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
        "checkpoint_run": np.array(lineage["checkpoint_run"]),
        "evaluation_run": np.array(run_id),
        "evaluation_settings": np.array(json.dumps(settings.model_dump(), sort_keys=True)),
    }
    return pd.DataFrame(rows), pd.DataFrame(per_class), outputs
