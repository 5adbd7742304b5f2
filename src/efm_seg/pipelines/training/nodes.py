"""Training node: one stage of the paper's recipe on the encoded samples of the split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import (
    DatasetParams,
    EFMMethodParams,
    StageOverrides,
    TrainingParams,
    as_mapping,
)
from efm_seg.training.config import TrainConfig
from efm_seg.training.trainer import Trainer

logger = logging.getLogger(__name__)


def split_ids(split: pd.DataFrame, samples: SampleStore) -> dict[str, list[str]]:
    """Sample ids per split, checked against the store they must all be in."""
    if not {"sample_id", "split"} <= set(split.columns):
        raise ValueError(
            "the split table needs columns sample_id and split; run the split pipeline"
        )
    missing = sorted(set(split["sample_id"]) - set(samples.ids))
    if missing:
        raise ValueError(
            f"{len(missing)} sample(s) of the split are not in the encoded samples (e.g. "
            f"{missing[:3]}): the split and the samples come from different preprocessing runs; "
            "run preprocessing and split again"
        )
    return {
        name: split.loc[split["split"] == name, "sample_id"].tolist()
        for name in ("train", "val", "test")
    }


def train_stage(
    stage: str,
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
    efm_method: EFMMethodParams,
    training: TrainingParams,
    overrides: StageOverrides | None,
    init_checkpoint: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, np.ndarray]]:
    """Train one stage and return its best checkpoint, history and EFM snapshots.

    Args:
        stage: The stage's name (its namespace).
        samples: The encoded samples.
        split: The split table; trains on ``train``, selects on ``val``.
        dataset: ``params:dataset`` (classes, ignore index).
        efm_method: ``params:efm_method`` (EFM map and loss constants).
        training: ``params:training``, the recipe shared by the stages.
        overrides: ``params:<stage>.overrides``, what this stage changes.
        init_checkpoint: The previous stage's best checkpoint, used when ``init_from: previous``.

    Returns:
        The best checkpoint (weights, model spec, classes, metrics), the per-epoch history and
        the EFM/entropy snapshots of a fixed set of validation images.
    """
    config = TrainConfig.from_params(stage, training, overrides, efm_method)
    scheme = LabelScheme.from_params(as_mapping(dataset))
    if config.init_from == "previous" and init_checkpoint is None:
        raise ValueError(
            f"{stage}.overrides.init_from is 'previous' but the {stage} stage has no previous "
            "stage to start from"
        )
    ids = split_ids(split, samples)
    trainer = Trainer(
        config,
        samples,
        ids["train"],
        ids["val"],
        classes=scheme.classes,
        ignore_index=scheme.ignore_index,
        init_checkpoint=init_checkpoint if config.init_from == "previous" else None,
    )
    result = trainer.fit()
    best = result.checkpoint
    logger.info(
        "%s: best validation IoU %.4f at epoch %d", stage, best["metrics"]["val_iou"], best["epoch"]
    )
    return result.checkpoint, pd.DataFrame(result.history), result.snapshots


def stage_trainer(stage: str):
    """:func:`train_stage` bound to one stage, as a plain function named ``train_<stage>``.

    A plain function rather than ``functools.partial`` keeps the signature and type hints
    visible to Kedro's parameter validation and to kedro-viz.
    """

    def train(
        samples: SampleStore,
        split: pd.DataFrame,
        dataset: DatasetParams,
        efm_method: EFMMethodParams,
        training: TrainingParams,
        overrides: StageOverrides,
        init_checkpoint: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, np.ndarray]]:
        return train_stage(
            stage, samples, split, dataset, efm_method, training, overrides, init_checkpoint
        )

    train.__name__ = train.__qualname__ = f"train_{stage}"
    train.__doc__ = f"Train the {stage} stage (see train_stage)."
    return train
