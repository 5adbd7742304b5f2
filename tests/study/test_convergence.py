"""Has the study's reference converged? Its validation curves judged by ``study.convergence``:
the gain over the last epochs, the fold's mean over its seeds, and the verdict in the tables."""

from __future__ import annotations

import pandas as pd
import pytest

from efm_seg.parameters import StudyConvergence, StudyParams
from efm_seg.study.analysis import METRICS, paired_differences, summary_table
from efm_seg.study.convergence import (
    convergence_table,
    failing_folds,
    has_converged,
    plateau_start,
)
from efm_seg.study.grid import Cell
from efm_seg.study.markdown import study_markdown


def history(curve: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": list(curve), "val_iou": list(curve.values()), "lr": 0.1})


def rising(epochs: int, start_value: float, gain: float, from_epoch: int) -> pd.DataFrame:
    """Flat at ``start_value`` up to ``from_epoch``, then ``gain`` more by the last epoch."""
    curve = {e: start_value for e in range(1, from_epoch + 1)}
    steps = epochs - from_epoch
    curve |= {from_epoch + k: start_value + gain * k / steps for k in range(1, steps + 1)}
    return history(curve)


def cell(fold: str, seed: int, arch: str = "FPN") -> Cell:
    return Cell(arch, fold, seed, "baseline_equal", "baseline")


@pytest.mark.parametrize(
    ("epochs", "fraction", "start"),
    [(90, 0.2, 72), (135, 0.2, 108), (180, 0.2, 144), (9, 0.2, 7), (3, 0.2, 2), (10, 0.5, 5)],
)
def test_the_last_fraction_of_epochs_starts_where_expected(epochs, fraction, start):
    assert plateau_start(epochs, fraction) == start


def test_a_fold_fails_on_its_seeds_mean_gain_not_on_one_seed():
    rule = StudyConvergence(tolerance=0.005)
    histories = {  # given out of fold and seed order
        cell("t2", 2): rising(90, 0.30, 0.002, 72),
        cell("t1", 2): rising(90, 0.25, 0.001, 72),
        cell("t1", 1): rising(90, 0.30, 0.012, 72),  # t1: mean 0.0065, fails
        cell("t2", 1): rising(90, 0.33, 0.006, 72),  # t2: mean 0.004, passes
    }
    table = convergence_table(histories, rule).set_index(["fold", "seed"])
    assert list(table.index) == [("t1", 1), ("t1", 2), ("t2", 1), ("t2", 2)]
    assert table.loc[("t1", 1), "gain"] == pytest.approx(0.012)
    assert table.loc[("t1", 1), "val_iou_from"] == pytest.approx(0.30)
    assert (table["from_epoch"] == 72).all() and (table["epochs"] == 90).all()
    assert table.loc[("t1", 2), "fold_gain"] == pytest.approx(0.0065)
    assert table.loc[("t2", 1), "fold_gain"] == pytest.approx(0.004)
    assert list(table["fold_fails"]) == [True, True, False, False]
    assert failing_folds(table.reset_index()) == {"FPN": ["t1"]}


def test_the_rule_is_configuration():
    histories = {cell("a", 1): rising(10, 0.2, 0.008, 8), cell("b", 1): rising(10, 0.2, 0.0, 5)}
    strict = convergence_table(histories, StudyConvergence())
    assert failing_folds(strict) == {"FPN": ["a"]}
    assert not has_converged(strict, StudyConvergence())
    assert has_converged(strict, StudyConvergence(failing_folds=1))
    # Over the last half (from epoch 5) fold a still gains 0.008; at tolerance 0.01 it passes.
    loose = convergence_table(histories, StudyConvergence(last_fraction=0.5, tolerance=0.01))
    assert set(loose["from_epoch"]) == {5} and not loose["fold_fails"].any()


def test_architectures_are_judged_apart():
    histories = {
        cell("a", 1, "FPN"): rising(10, 0.2, 0.05, 8),
        cell("a", 1, "PSPNet"): rising(10, 0.2, 0.0, 8),
    }
    table = convergence_table(histories, StudyConvergence())
    assert failing_folds(table) == {"FPN": ["a"], "PSPNet": []}


def test_a_history_written_again_after_a_resume_counts_its_last_rows():
    first = rising(10, 0.2, 0.3, 8)  # epoch 10 at 0.5 ...
    resumed = pd.concat([first, history({9: 0.21, 10: 0.22})])  # ... trained again: 0.22
    table = convergence_table({cell("a", 1): resumed}, StudyConvergence())
    assert table["gain"].item() == pytest.approx(0.02)


@pytest.mark.parametrize("epoch", [8, 10])
def test_a_missing_validation_score_is_refused_not_read_as_converged(epoch):
    curve = rising(10, 0.2, 0.3, 8)
    curve.loc[curve["epoch"] == epoch, "val_iou"] = float("nan")
    with pytest.raises(
        ValueError, match=rf"seed1\.baseline_equal.*no validation IoU at epoch {epoch}"
    ):
        convergence_table({cell("a", 1): curve}, StudyConvergence())
    with pytest.raises(ValueError, match=r"seed1\.baseline_equal\.baseline\.history: no epoch"):
        convergence_table({cell("a", 1): curve.iloc[:0]}, StudyConvergence())


def test_a_history_that_cannot_be_judged_is_refused_by_name():
    name = r"study\.FPN\.a\.seed1\.baseline_equal\.baseline"
    with pytest.raises(ValueError, match=name + ".*val_iou"):
        convergence_table({cell("a", 1): pd.DataFrame({"epoch": [1]})}, StudyConvergence())
    gappy = history({1: 0.1, 2: 0.2, 10: 0.3})  # no epoch 8
    with pytest.raises(ValueError, match=r"seed1.*no validation IoU at epoch 8"):
        convergence_table({cell("a", 1): gappy}, StudyConvergence())


STUDY = {
    "architectures": ["FPN"],
    "seeds": [1],
    "folds": {
        "a": {"x": "test", "y": "val"},
        "b": {"y": "test", "x": "val"},
        "c": {"z": "test", "x": "val"},
    },
    "epochs": {"baseline": 4, "efm": 4, "finetune": 2},
    "variants": {"full": {}},
}


def scored(runs: dict[str, float]) -> pd.DataFrame:
    """Per-seed rows of ``STUDY`` with every metric at the run's value, on every fold."""
    return pd.DataFrame(
        [
            {"arch": "FPN", "run": run, "stage": "baseline", "fold": fold, "seed": 1}
            | dict.fromkeys(METRICS, value)
            for run, value in runs.items()
            for fold in STUDY["folds"]
        ]
    )


@pytest.mark.parametrize(("allowed", "verdict"), [(0, "**Not converged: 2 of 3"), (2, "Converged")])
def test_the_tables_say_whether_the_reference_converged(allowed, verdict):
    study = StudyParams.model_validate(STUDY | {"convergence": {"failing_folds": allowed}})
    histories = {
        cell("a", 1): rising(10, 0.2, 0.02, 8),
        cell("b", 1): rising(10, 0.2, 0.00, 8),
        cell("c", 1): rising(10, 0.2, 0.01, 8),
    }
    table = convergence_table(histories, study.convergence)
    per_seed = scored({"baseline_equal": 0.3, "baseline": 0.2})
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    text = study_markdown(study, summary_table(per_seed), paired, per_seed, table)
    assert "### Has the reference converged?" in text
    assert verdict in text
    if allowed == 0:
        assert "(a, c)" in text and "lengthen `study.epochs`" in text
    section = text[text.index("### Has the reference converged?") : text.index("### Mean")]
    assert "+0.0200" in section and "+0.0100" in section and "+0.0000" in section
