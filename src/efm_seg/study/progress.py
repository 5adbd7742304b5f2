"""How much of a study is left, and how long it will take at the pace its finished cells set.

A converged study trains for hours, over several invocations (``--only-missing-outputs``); each
one says, before it starts, what it will train and about how long that takes, so that it can be
planned (and its wall time compared with the estimate).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from efm_seg.basics.durations import duration_text


@dataclass(frozen=True)
class StudyProgress:
    """What a run of the study will train, and its pace so far."""

    cells: int  # the cells in this run (all of the grid, or those its --tags select)
    to_train: int  # of which still to train
    epochs: int  # the epochs those train, from their recipes
    seconds_per_epoch: float | None  # the median over finished cells of their mean epoch
    finished: int  # how many finished cells the pace comes from

    @property
    def seconds(self) -> float | None:
        """The training time left (scoring, a few seconds a cell, not counted)."""
        return None if self.seconds_per_epoch is None else self.epochs * self.seconds_per_epoch

    def message(self) -> str:
        head = f"study: {self.to_train} of {self.cells} cells to train ({self.epochs:,} epochs)"
        if self.to_train == 0:
            return f"study: all {self.cells} cells are trained"
        if self.seconds is None:
            return f"{head}; the pace is known once a cell has finished"
        return (
            f"{head}: about {duration_text(self.seconds)} at {self.seconds_per_epoch:.1f} s per "
            f"epoch (the median of {self.finished} finished cell(s); training only)"
        )


def study_progress(
    epochs_to_train: Mapping[str, int],
    cells: int,
    finished_histories: Iterable[pd.DataFrame],
) -> StudyProgress:
    """The progress of a study run.

    Args:
        epochs_to_train: The epochs of each cell still to train, by name.
        cells: How many cells the run holds.
        finished_histories: The training histories of finished cells (``seconds`` per epoch).
    """
    paces = []
    for history in finished_histories:
        if "seconds" in history and len(history):
            pace = float(history["seconds"].sum()) / len(history)
            if math.isfinite(pace) and pace > 0:
                paces.append(pace)
    return StudyProgress(
        cells=cells,
        to_train=len(epochs_to_train),
        epochs=sum(epochs_to_train.values()),
        seconds_per_epoch=statistics.median(paces) if paces else None,
        finished=len(paces),
    )
