"""Evaluation nodes: score a checkpoint on the test split (:mod:`efm_seg.evaluation.scoring`);
put the stages and the equal-budget baseline side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from efm_seg.basics.lineage import check_stage_rows
from efm_seg.basics.names import EQUAL_BUDGET
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import DatasetParams, EvaluationParams

# The scoring functions need torch: they are imported when a node runs, so that the CLI (which
# imports every pipeline to register it) never pays for it.


def check_lineage(
    baseline_checkpoint: dict[str, Any],
    efm_checkpoint: dict[str, Any],
    finetune_checkpoint: dict[str, Any],
    baseline_equal_checkpoint: dict[str, Any],
    samples: SampleStore,
    split: pd.DataFrame,
    dataset: DatasetParams,
) -> dict[str, dict[str, str]]:
    """Check, before any model is scored, that the three stages' checkpoints and the
    equal-budget baseline's share one lineage (see
    :func:`efm_seg.evaluation.scoring.check_lineage`)."""
    from efm_seg.evaluation.scoring import check_lineage as check

    checkpoints = {
        "baseline": baseline_checkpoint,
        "efm": efm_checkpoint,
        "finetune": finetune_checkpoint,
        EQUAL_BUDGET: baseline_equal_checkpoint,
    }
    return check(checkpoints, samples, split, dataset)


def stage_evaluator(stage: str):
    """:func:`~efm_seg.evaluation.scoring.evaluate_stage` bound to one stage, as a plain
    function named ``evaluate_<stage>``."""

    def evaluate(
        checkpoint: dict[str, Any],
        samples: SampleStore,
        split: pd.DataFrame,
        dataset: DatasetParams,
        evaluation: EvaluationParams,
        lineage: dict[str, dict[str, str]],
        run_info: dict[str, Any],
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
        from efm_seg.evaluation.scoring import evaluate_stage

        return evaluate_stage(
            stage, checkpoint, samples, split, dataset, evaluation, run_info, lineage
        )

    evaluate.__name__ = evaluate.__qualname__ = f"evaluate_{stage}"
    evaluate.__doc__ = f"Evaluate the {stage} stage's best checkpoint (see evaluate_stage)."
    return evaluate


def combine_stages(*tables: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack the models' overall and per-class tables (the first half are overall tables).

    Raises:
        LineageError: The stages do not share one lineage (``efm_seg.basics.lineage.check_stages``).
    """
    half = len(tables) // 2
    overall = pd.concat(tables[:half], ignore_index=True)
    check_stage_rows(overall, "evaluation")
    return overall, pd.concat(tables[half:], ignore_index=True)
