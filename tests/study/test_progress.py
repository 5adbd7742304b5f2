"""What a study run will train and how long it takes, at the pace of its finished cells."""

from __future__ import annotations

import pandas as pd

from efm_seg.study.progress import study_progress


def history(seconds: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(seconds) + 1), "seconds": seconds})


def test_the_pace_is_the_median_of_the_finished_cells_mean_epochs():
    finished = [history([2.0, 2.0]), history([1.0, 5.0, 3.0]), history([10.0]), history([])]
    progress = study_progress({"a": 100, "b": 35}, 9, finished)
    assert (progress.to_train, progress.cells, progress.epochs) == (2, 9, 135)
    assert progress.seconds_per_epoch == 3.0 and progress.finished == 3  # of 2, 3 and 10
    assert progress.seconds == 405.0
    assert progress.message() == (
        "study: 2 of 9 cells to train (135 epochs): about 7 min at 3.0 s per epoch "
        "(the median of 3 finished cell(s); training only)"
    )


def test_without_a_finished_cell_the_pace_is_unknown_and_a_done_study_says_so():
    fresh = study_progress({"a": 4000}, 12, [])
    assert fresh.seconds is None
    assert fresh.message() == (
        "study: 1 of 12 cells to train (4,000 epochs); the pace is known once a cell has finished"
    )
    long = study_progress({"a": 4000}, 12, [history([2.0])])
    assert "about 2.2 h at 2.0 s per epoch" in long.message()
    assert study_progress({}, 12, [history([2.0])]).message() == "study: all 12 cells are trained"
