"""``kedro run --pipelines study``: the grid of ``params:study``, one namespace per cell.

For every architecture and seed: ``study.<arch>.seed<s>.baseline.baseline`` (the paper's
baseline stage), ``study.<arch>.seed<s>.baseline_equal.baseline`` (the same recipe for the
three stages' epochs together), and for every variant ``study.<arch>.seed<s>.<variant>.efm``
then ``.finetune``. Each cell is the same two-node template (``train``, then ``evaluate`` on
the evaluation split) under its own namespace; the catalog's ``study.{arch}.{seed}.{run}.
{stage}.*`` factories give every cell its versioned checkpoint, history, resumable state and
scores. ``study.summarize`` compares the runs across seeds.

The grid comes from the running session's configuration
(:mod:`efm_seg.framework.hooks.study_grid`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from efm_seg.basics.names import TRAINING_TAG
from efm_seg.framework.hooks.study_grid import session_study_block
from efm_seg.parameters import StudyParams
from efm_seg.pipelines.study.nodes import cell_evaluator, cell_trainer, summarize_study
from efm_seg.study.grid import Cell, cells

logger = logging.getLogger(__name__)

SHARED_INPUTS = {"encoded_samples", "split", "run_info"}
PARAMETERS = {
    "params:dataset",
    "params:efm_method",
    "params:training",
    "params:study",
    "params:evaluation",
}
# study.cells last: Kedro saves outputs in order, so a summary cut short is never recorded as done.
OUTPUTS = [
    "study.per_seed",
    "study.summary",
    "study.paired",
    "study.tables",
    "study.figure",
    "study.cells",
]


def create_cell_pipeline(cell: Cell) -> Pipeline:
    """Train one cell, then score its best checkpoint; inputs and outputs under ``cell.name``."""
    inputs = {
        "samples": "encoded_samples",
        "split": "split",
        "dataset": "params:dataset",
        "efm_method": "params:efm_method",
        "training": "params:training",
        "stage_overrides": "params:stage_overrides",
        "study": "params:study",
        "run_info": "run_info",
        "training_state": "training_state",
    }
    parent = cell.parent
    if parent is not None:
        inputs["init_checkpoint"] = "init_checkpoint"
    template = Pipeline(
        [
            Node(
                func=cell_trainer(cell),
                inputs=inputs,
                outputs=["best_checkpoint", "history"],
                name="train",
                tags=[TRAINING_TAG],
            ),
            Node(
                func=cell_evaluator(cell),
                inputs={
                    "checkpoint": "best_checkpoint",
                    "samples": "encoded_samples",
                    "split": "split",
                    "dataset": "params:dataset",
                    "evaluation": "params:evaluation",
                    "run_info": "run_info",
                },
                outputs="scores",
                name="evaluate",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=cell.name,
        inputs={name: name for name in SHARED_INPUTS}
        | ({"init_checkpoint": f"{parent.name}.best_checkpoint"} if parent else {}),
        parameters={name: name for name in PARAMETERS}
        | {"params:stage_overrides": f"params:{cell.stage}.overrides"},
    )


def create_pipeline(study: Mapping[str, Any] | None = None, **kwargs) -> Pipeline:
    """The study's pipeline for ``study`` (default: the configured ``study`` block)."""
    block = session_study_block() if study is None else study
    if block is None:
        logger.debug(
            "no study block (no session has loaded its configuration): the study pipeline is "
            "empty until one does"
        )
        return Pipeline([])
    grid = list(cells(StudyParams.model_validate(block)))
    summarize = Node(
        func=summarize_study,
        inputs=[
            "params:study",
            "params:training",
            "params:efm_method",
            "params:baseline.overrides",
            "params:efm.overrides",
            "params:finetune.overrides",
            *(f"{cell.name}.scores" for cell in grid),
        ],
        outputs=OUTPUTS,
        name="summarize",
        namespace="study",
    )
    return sum((create_cell_pipeline(cell) for cell in grid), Pipeline([])) + Pipeline([summarize])
