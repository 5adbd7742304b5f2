"""One training stage of the paper's recipe on the encoded samples of a split, with its lineage:
the library function behind the training nodes (and the study's cells)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from efm_seg.basics.lineage import check_same_data, checkpoint_lineage, config_fingerprint
from efm_seg.basics.mappings import as_mapping
from efm_seg.basics.provenance import run_id_of
from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.data.split import data_lineage, split_ids
from efm_seg.parameters import DatasetParams, EFMMethodParams, StageOverrides, TrainingParams
from efm_seg.training.config import TrainConfig
from efm_seg.training.resume import StateFile
from efm_seg.training.trainer import StageJob, train

logger = logging.getLogger(__name__)


def training_record(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without its weights: what the stage's ``training_record.json`` holds."""
    return {key: value for key, value in checkpoint.items() if key != "state_dict"}


def train_stage(
    stage: str,
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
    efm_method: EFMMethodParams,
    training: TrainingParams,
    overrides: StageOverrides | None,
    run_info: dict[str, Any],
    init_checkpoint: dict[str, Any] | None = None,
    training_state: StateFile | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """Train one stage; return its best checkpoint, history, EFM snapshots and record.

    Args:
        stage: The stage's name (its namespace).
        samples: The encoded samples.
        split: The split table; trains on ``train``, selects on ``val``.
        dataset: ``params:dataset`` (classes, ignore index).
        efm_method: ``params:efm_method`` (EFM map and loss constants).
        training: ``params:training``, the recipe shared by the stages.
        overrides: ``params:<stage>.overrides``, what this stage changes.
        run_info: This run's ``run_info`` (its id is recorded as the checkpoint's lineage).
        init_checkpoint: The previous stage's best checkpoint, used when ``init_from: previous``;
            it must come from the same data (store, split, classes).
        training_state: Where the stage saves its resumable state every epoch and resumes
            from after a crash (``training.resume``); ``None`` trains without one.

    Returns:
        The best checkpoint (weights, model spec, classes, metrics, lineage, effective recipe,
        device), the per-epoch history, the EFM/entropy snapshots of a fixed set of validation
        images (both tagged with the run id), and the checkpoint's record without the weights.

    Raises:
        LineageError: The checkpoint to start from was trained on other data.
        StoreChangedError: The sample store was replaced during training.
    """
    config = TrainConfig.from_params(stage, training, overrides, efm_method)
    scheme = LabelScheme.from_params(as_mapping(dataset))
    run_id = run_id_of(run_info)
    if config.init_from == "previous" and init_checkpoint is None:
        raise ValueError(
            f"{stage}.overrides.init_from is 'previous' but the {stage} stage has no previous "
            "stage to start from"
        )
    ids = split_ids(split, samples)
    data = data_lineage(samples, split, scheme)
    init = None
    if config.init_from == "previous":
        parent_stage = str(init_checkpoint.get("stage", "previous"))
        what = f"the {parent_stage} checkpoint it starts from"
        parent = checkpoint_lineage(stage, init_checkpoint, what)
        check_same_data(
            stage,
            parent,
            data,
            what,
            f"Train the {parent_stage} stage again first: kedro run --pipelines {parent_stage}",
        )
        init = {"stage": parent_stage, "run_id": parent["run_id"]}
    result = train(
        StageJob(
            config,
            samples,
            ids["train"],
            ids["val"],
            classes=scheme.classes,
            ignore_index=scheme.ignore_index,
            init_checkpoint=init_checkpoint if config.init_from == "previous" else None,
            state_file=training_state,
            resume_key={**data.as_dict(), "init": init},
            run_id=run_id,
        )
    )
    checkpoint = {
        **result.checkpoint,
        "lineage": {
            "run_id": run_id,
            "stage": stage,
            **data.as_dict(),
            "dataset": config_fingerprint(as_mapping(dataset)),
            "init": init,
        },
        # The run that trained it: when, where, from which code and packages, on what machine.
        "run": {
            key: run_info.get(key)
            for key in ("run_id", "started", "env", "git", "packages", "machine")
        },
    }
    logger.info(
        "%s: best validation IoU %.4f at epoch %d",
        stage,
        checkpoint["metrics"]["val_iou"],
        checkpoint["epoch"],
    )
    history = pd.DataFrame(result.history)
    if "run_id" not in history:  # a state saved before rows recorded their run
        history = history.assign(run_id=run_id)
    history["run_id"] = history["run_id"].fillna(run_id)
    snapshots = {**result.snapshots, "run_id": np.array(run_id)}
    return checkpoint, history, snapshots, training_record(checkpoint)
