"""Training nodes: one stage of the paper's recipe (:func:`efm_seg.training.stage.train_stage`),
and the equal-budget baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from efm_seg.basics.names import EQUAL_BUDGET
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import (
    DatasetParams,
    EFMMethodParams,
    StageOverrides,
    TrainingParams,
    equal_budget_overrides,
)
from efm_seg.training.resume import StateFile


def stage_trainer(stage: str):
    """:func:`~efm_seg.training.stage.train_stage` bound to one stage, as a plain function
    named ``train_<stage>``.

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
        run_info: dict[str, Any],
        training_state: StateFile,
        init_checkpoint: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
        # torch: imported when the node runs, so that the CLI (which imports every pipeline to
        # register it) never pays for it.
        from efm_seg.training.stage import train_stage

        return train_stage(
            stage, samples, split, dataset, efm_method, training, overrides, run_info,
            init_checkpoint, training_state,
        )  # fmt: skip

    train.__name__ = train.__qualname__ = f"train_{stage}"
    train.__doc__ = f"Train the {stage} stage (see efm_seg.training.stage.train_stage)."
    return train


def train_baseline_equal(
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
    efm_method: EFMMethodParams,
    training: TrainingParams,
    overrides: StageOverrides,
    baseline_overrides: StageOverrides,
    efm_overrides: StageOverrides,
    finetune_overrides: StageOverrides,
    run_info: dict[str, Any],
    training_state: StateFile,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """Train the equal-budget baseline: the baseline's recipe in one run of as many epochs as
    the three stages together (:func:`efm_seg.parameters.equal_budget_overrides`)."""
    from efm_seg.training.stage import train_stage

    stages = {"baseline": baseline_overrides, "efm": efm_overrides, "finetune": finetune_overrides}
    budget = equal_budget_overrides(training, stages, overrides)
    return train_stage(
        EQUAL_BUDGET, samples, split, dataset, efm_method, training, budget, run_info, None,
        training_state,
    )  # fmt: skip
