"""A study's cells put together: checked to form one study (same recipe and lineage as the
current configuration), then compared across seeds."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from efm_seg.parameters import EFMMethodParams, StudyParams, TrainingParams
from efm_seg.study.grid import Cell, cells, expected_fingerprint

logger = logging.getLogger(__name__)


class StaleCellError(ValueError):
    """A cell's saved scores do not belong to the current configuration or lineage."""


def check_cells(
    scores: pd.DataFrame,
    study: StudyParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    stage_overrides: dict[str, Any],
    require_all: bool = True,
) -> None:
    """Refuse scores of a cell trained with another recipe, or from another parent.

    A study continued with ``--only-missing-outputs`` keeps the cells it finished before; if the
    configuration changed in between, those cells would silently mix two studies.

    Args:
        scores: The cells' score rows (one per cell).
        study, training, efm_method: The current parameter blocks.
        stage_overrides: ``<stage>.overrides`` per stage.
        require_all: Every cell of the grid must have scores (else only those given are
            checked).
    """
    by_cell = {
        (row.arch, row.fold, row.seed, row.run, row.stage): row for row in scores.itertuples()
    }
    problems = []
    for cell in cells(study):
        row = by_cell.get((cell.arch, cell.fold, cell.seed, cell.run, cell.stage))
        if row is None:
            if require_all:
                problems.append(f"{cell.name}: no scores")
            continue
        expected = expected_fingerprint(
            study, cell, training, stage_overrides[cell.stage], efm_method
        )
        if row.recipe != expected:
            problems.append(
                f"{cell.name}: trained (run {row.checkpoint_run}) with another recipe than the "
                "current configuration"
            )
        parent = cell.parent
        if row.init_stage and parent is not None:
            source = by_cell.get((parent.arch, parent.fold, parent.seed, parent.run, parent.stage))
            if source is None or row.init_run != source.checkpoint_run:
                problems.append(
                    f"{cell.name}: started from run {row.init_run} of {parent.name}, whose "
                    f"scored checkpoint is from run {getattr(source, 'checkpoint_run', None)}"
                )
    if problems:
        raise StaleCellError(
            "the study's saved cells do not form one study: "
            + "; ".join(problems[:8])
            + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            + ". Run the study again without --only-missing-outputs, or remove those cells' "
            "folders under 06_models/study and 07_model_output/study so that they train again"
        )


def lineage_as_text(scores: pd.DataFrame) -> pd.DataFrame:
    # A CSV reads an empty lineage field (a cell started from new weights) back as NaN.
    lineage = ["checkpoint_run", "init_stage", "init_run"]
    return scores.assign(**{c: scores[c].fillna("").astype(str) for c in lineage})


def scored_runs(scores: pd.DataFrame) -> dict[str, str]:
    """``{cell name: run id of its scored checkpoint}`` from the cells' score rows."""
    rows = scores.drop_duplicates(["arch", "fold", "seed", "run", "stage"])
    return {
        Cell(row.arch, str(row.fold), int(row.seed), row.run, row.stage).name: str(
            row.checkpoint_run
        )
        for row in rows.itertuples()
    }


StudySummary = tuple[
    pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, str, Figure, dict[str, Any]
]  # fmt: skip
"""What ``study.summarize`` writes: per-seed scores, mean ± std, paired differences, the same per
fold, the Markdown tables, the figure, and the cells' record."""


SUMMARY_LAYOUT = 2
"""The version of the summary's tables and figure: raised when what they show changes, so that a
study continued after an upgrade writes its summary again (2: each pair in the figure)."""


def summary_settings(study: StudyParams) -> dict[str, Any]:
    """The study settings (and the summary's layout) that change a summary of the same cells."""
    return {
        "tta": study.tta,
        "confidence": study.confidence,
        "convergence": study.convergence.model_dump(),
        "layout": SUMMARY_LAYOUT,
    }


def some(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
