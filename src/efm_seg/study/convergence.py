"""Has the study's reference trained to a plateau? Its validation curves, judged by
``study.convergence`` (:class:`~efm_seg.parameters.StudyConvergence`).

An equal-budget comparison answers its question only if the reference had stopped improving
when it stopped: otherwise a longer budget could change the answer. Only validation IoU is
read, never a test score, so the rule can decide the study's length before any answer is seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from efm_seg.parameters import StudyConvergence
from efm_seg.study.grid import Cell

COLUMNS = [
    "arch", "fold", "seed", "epochs", "from_epoch", "val_iou_from", "val_iou_last", "gain",
    "fold_gain", "fold_fails",
]  # fmt: skip


def plateau_start(epochs: int, last_fraction: float) -> int:
    """The epoch the last ``last_fraction`` of ``epochs`` is measured from (72 of 90 at 0.2)."""
    return max(1, epochs - math.ceil(epochs * last_fraction - 1e-9))


def convergence_table(
    histories: Mapping[Cell, pd.DataFrame], rule: StudyConvergence
) -> pd.DataFrame:
    """One row per reference run (architecture, fold, seed): its validation IoU at the start of
    its last ``rule.last_fraction`` of epochs and at its last epoch, the gain between them, and
    its fold's mean gain over the seeds with whether that fold fails (``fold_fails``).

    Raises:
        ValueError: A history has no ``epoch`` or ``val_iou`` column, no epoch, or no
            validation IoU at the epoch the gain is measured from or at its last (the message
            names the cell).
    """
    rows = []
    for cell, history in histories.items():
        missing = {"epoch", "val_iou"} - set(history.columns)
        if missing:
            raise ValueError(f"{cell.name}.history: no {', '.join(sorted(missing))} column")
        by_epoch = history.drop_duplicates("epoch", keep="last").set_index("epoch")["val_iou"]
        if by_epoch.empty:
            raise ValueError(f"{cell.name}.history: no epoch trained")
        last = int(by_epoch.index.max())
        start = plateau_start(last, rule.last_fraction)
        for epoch in (start, last):  # a missing score must not pass as "no gain"
            if epoch not in by_epoch.index or pd.isna(by_epoch[epoch]):
                raise ValueError(
                    f"{cell.name}.history: no validation IoU at epoch {epoch} (the last "
                    f"{rule.last_fraction:.0%} of its {last} epochs start at {start})"
                )
        rows.append(
            {
                "arch": cell.arch,
                "fold": cell.fold,
                "seed": cell.seed,
                "epochs": last,
                "from_epoch": start,
                "val_iou_from": float(by_epoch[start]),
                "val_iou_last": float(by_epoch[last]),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS[:7])
    table["gain"] = table["val_iou_last"] - table["val_iou_from"]
    fold_gain = table.groupby(["arch", "fold"])["gain"].transform("mean")
    table["fold_gain"] = fold_gain
    table["fold_fails"] = fold_gain >= rule.tolerance
    return table.sort_values(["arch", "fold", "seed"], kind="stable").reset_index(drop=True)


def history_run(history: pd.DataFrame) -> str | None:
    """The run that wrote a history (its last epoch's ``run_id``), or ``None``."""
    if "run_id" not in history or history.empty:
        return None
    return str(history["run_id"].iloc[-1])


def failing_folds(table: pd.DataFrame) -> dict[str, list[str]]:
    """Per architecture, the folds whose reference runs were still improving."""
    fails = table[table["fold_fails"].astype(bool)]
    return {
        arch: sorted(set(fails.loc[fails["arch"] == arch, "fold"]))
        for arch in dict.fromkeys(table["arch"])
    }


def has_converged(table: pd.DataFrame, rule: StudyConvergence) -> bool:
    """Whether every architecture's reference has at most ``rule.failing_folds`` failing
    folds."""
    return all(len(folds) <= rule.failing_folds for folds in failing_folds(table).values())
