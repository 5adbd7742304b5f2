"""``kedro run --pipelines study``: the grid of ``params:study``, one namespace per cell.

For every architecture, fold and seed (``<cell> = study.<arch>.<fold>.seed<s>``):
``<cell>.baseline.baseline`` (the paper's baseline stage), ``<cell>.baseline_equal.baseline``
(the same recipe for the three stages' epochs together), and for every variant
``<cell>.<variant>.efm`` then ``.finetune`` (or ``.baseline`` alone for a one-run variant).
Each cell is the same two-node template (``train``, then ``evaluate`` on the evaluation split)
under its own namespace; the catalog's ``study.{arch}.{fold}.{seed}.{run}.{stage}.*`` factories
give every cell its versioned checkpoint, history, resumable state and scores. The fold
``split`` is the project's split; each of ``study.folds`` gets its own (``study.folds.<fold>.
split``, made from ``encoded_index``). ``study.summarize`` compares the runs across folds and
seeds; ``study.check_convergence`` judges from the equal-budget baseline's histories alone
whether it had converged.

Every cell's nodes are tagged with its run, fold, seed and architecture (:func:`cell_tags`), so
that part of the grid can be trained first, e.g. the reference runs
(``--tags study.run.baseline_equal``), without the summary (tagged ``study.summary``).

The grid comes from the running session's configuration
(:mod:`efm_seg.framework.hooks.study_grid`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline
from pydantic import ValidationError

from efm_seg.basics.names import TRAINING_TAG
from efm_seg.framework.hooks.study_grid import session_study_block
from efm_seg.parameters import StudyParams, describe
from efm_seg.pipelines.study.nodes import (
    cell_evaluator,
    cell_trainer,
    check_convergence,
    fold_splitter,
    reference_cells,
    summarize_study,
)
from efm_seg.study.grid import REFERENCE, Cell, cells, fold_split

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
    "study.per_fold",
    "study.tables",
    "study.figure",
    "study.cells",
]


def cell_tags(grid: list[Cell]) -> dict[Cell, set[str]]:
    """Each cell's tags: ``study.run.<run>``, ``study.fold.<fold>``, ``study.seed.<seed>`` and
    ``study.arch.<arch>``, and the run tag of every cell that starts from it, so that
    ``kedro run --pipelines study --tags study.run.<run>`` selects what that run needs (an EFM
    stage needs its seed's baseline; fine-tuning its EFM stage)."""
    tags = {
        cell: {
            f"study.run.{cell.run}",
            f"study.fold.{cell.fold}",
            f"study.seed.{cell.seed}",
            f"study.arch.{cell.arch}",
        }
        for cell in grid
    }
    for cell in grid:
        parent = cell.parent
        while parent is not None and parent in tags:
            tags[parent].add(f"study.run.{cell.run}")
            parent = parent.parent
    return tags


def create_cell_pipeline(cell: Cell, tags: set[str] | None = None) -> Pipeline:
    """Train one cell, then score its best checkpoint; inputs and outputs under ``cell.name``,
    every node tagged with ``tags`` (:func:`cell_tags`)."""
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
        | {"split": cell.split}
        | ({"init_checkpoint": f"{parent.name}.best_checkpoint"} if parent else {}),
        parameters={name: name for name in PARAMETERS}
        | {"params:stage_overrides": f"params:{cell.stage}.overrides"},
        tags=sorted(tags or ()),
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
    try:
        study = StudyParams.model_validate(block)
    except ValidationError as exc:
        # Built while Kedro finds the pipelines, before any hook can check a parameter: the
        # user sees this message as the run's error, every problem named on one line.
        raise ValueError(describe(exc, "study")) from None
    grid = list(cells(study))
    tags = cell_tags(grid)
    folds = [
        Node(
            func=fold_splitter(fold),
            inputs=["encoded_index", "params:study", "params:split"],
            outputs=fold_split(fold),
            name=f"split_{fold}",
            namespace="study.folds",
            # Whatever selects a cell of the fold selects the split it trains on.
            tags=sorted(set().union(*(tags[cell] for cell in grid if cell.fold == fold))),
        )
        for fold in study.folds
    ]
    summarize = Node(
        func=summarize_study,
        inputs=[
            "params:study",
            "params:training",
            "params:efm_method",
            "params:baseline.overrides",
            "params:efm.overrides",
            "params:finetune.overrides",
            "study.convergence",
            *(f"{cell.name}.scores" for cell in grid),
        ],
        outputs=OUTPUTS,
        name="summarize",
        namespace="study",
        tags=["study.summary"],
    )
    # Judged from the reference runs alone, so that it can be read (and the study's length
    # fixed) before anything else trains: --tags study.run.baseline_equal runs it.
    convergence = Node(
        func=check_convergence,
        inputs=["params:study", *(f"{cell.name}.history" for cell in reference_cells(study))],
        outputs=["study.convergence", "study.convergence_figure", "study.convergence_runs"],
        name="check_convergence",
        namespace="study",
        tags=["study.convergence", f"study.run.{REFERENCE}"],
    )
    cell_pipelines = sum((create_cell_pipeline(cell, tags[cell]) for cell in grid), Pipeline([]))
    return Pipeline(folds) + cell_pipelines + Pipeline([convergence, summarize])
