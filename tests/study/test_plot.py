"""The study's figures show what its tables say: each pair's difference beside the mean and
interval, and the reference's validation curves with the window its convergence is judged on."""

from __future__ import annotations

import pandas as pd
import pytest

from efm_seg.parameters import StudyConvergence, StudyParams
from efm_seg.study.analysis import METRICS, pair_differences, paired_differences
from efm_seg.study.convergence import convergence_table
from efm_seg.study.grid import Cell
from efm_seg.study.plot import ablation_figure, convergence_figure, pair_count

FOLDS = {
    "t1": {"*tile_1*": "test", "*tile_2*": "val"},
    "t2": {"*tile_2*": "test", "*tile_3*": "val"},
}


def study(**changes) -> StudyParams:
    base = {
        "architectures": ["FPN"],
        "seeds": [1, 2],
        "folds": FOLDS,
        "epochs": {"baseline": 4, "efm": 4, "finetune": 2},
        "variants": {"focal": {}},
    }
    return StudyParams.model_validate(base | changes)


def test_the_ablation_figure_shows_each_pair_beside_the_mean_and_interval():
    scores = {  # (fold, seed): (reference, focal)
        ("t1", 1): (0.50, 0.52), ("t1", 2): (0.40, 0.47),
        ("t2", 1): (0.30, 0.29), ("t2", 2): (0.60, 0.64),
    }  # fmt: skip
    rows = [
        {"arch": "FPN", "run": run, "stage": "baseline", "fold": fold, "seed": seed}
        | dict.fromkeys(METRICS, values[k])
        for (fold, seed), values in scores.items()
        for k, run in enumerate(("baseline_equal", "focal"))
    ]
    per_seed = pd.DataFrame(rows)
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    pairs = pair_differences(per_seed, "baseline_equal", "baseline")
    figure = ablation_figure(paired, pairs, study())
    panels = figure.axes
    assert [ax.get_title() for ax in panels] == [
        "FPN: Δ mIoU", "FPN: Δ Boundary IoU", "FPN: Δ ECE", "FPN: Δ ECE (T-scaled)",
    ]  # fmt: skip
    grey = [line for line in panels[0].get_lines() if line.get_color() == "0.55"]
    assert len(grey) == 1
    assert sorted(grey[0].get_xdata()) == pytest.approx([-0.01, 0.02, 0.04, 0.07])
    mean = paired[paired["metric"] == "miou"]["difference"].iloc[0]
    dots = [line for line in panels[0].get_lines() if line.get_marker() == "o"]
    assert dots[0].get_xdata()[0] == pytest.approx(mean)
    assert "4 pairs: 2 folds × 2 seeds" in figure.get_suptitle()


def test_without_folds_the_figure_counts_seeds():
    paired = pd.DataFrame(columns=["arch", "run", "stage", "metric"])
    pairs = pd.DataFrame(columns=["arch", "run", "stage", "metric", "difference"])
    figure = ablation_figure(paired, pairs, study(folds={}, seeds=[1, 2, 3]))
    assert "over 3 seeds;" in figure.get_suptitle()


def curve(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(values) + 1), "val_iou": values})


def test_the_convergence_figure_shows_each_folds_curves_and_the_judged_window():
    histories = {
        Cell("FPN", "t1", 1, "baseline_equal", "baseline"): curve([0.1] * 8 + [0.2, 0.3]),
        Cell("FPN", "t1", 2, "baseline_equal", "baseline"): curve([0.1] * 10),
        Cell("FPN", "t2", 1, "baseline_equal", "baseline"): curve([0.2] * 10),
    }
    chosen = study(convergence=StudyConvergence(last_fraction=0.2, tolerance=0.005))
    table = convergence_table(histories, chosen.convergence)
    figure = convergence_figure(histories, table, chosen)
    t1, t2 = (ax for ax in figure.axes if ax.get_visible())
    assert t1.get_title() == "FPN, t1: +0.1000 (fails)"  # (0.2 + 0.0) / 2 from epoch 8
    assert t2.get_title() == "FPN, t2: +0.0000 (plateaued)"
    assert [line.get_label() for line in t1.get_lines()] == ["seed 1", "seed 2"]
    assert list(t1.get_lines()[0].get_ydata()) == pytest.approx([0.1] * 8 + [0.2, 0.3])
    (window,) = t1.patches
    assert (window.get_x(), window.get_x() + window.get_width()) == (8, 10)
    assert "last 20% of epochs" in figure.get_suptitle()


def test_a_resumed_runs_repeated_epochs_are_drawn_once_with_their_last_values():
    resumed = pd.DataFrame(  # killed after epoch 10, resumed from the state saved at 8
        {"epoch": [*range(1, 11), 9, 10], "val_iou": [0.1] * 8 + [0.35, 0.5, 0.21, 0.22]}
    )
    histories = {Cell("FPN", "t1", 1, "baseline_equal", "baseline"): resumed}
    chosen = study(seeds=[1], folds={"t1": FOLDS["t1"]})
    table = convergence_table(histories, chosen.convergence)
    (panel,) = (ax for ax in convergence_figure(histories, table, chosen).axes if ax.get_visible())
    (line,) = panel.get_lines()
    assert list(line.get_xdata()) == list(range(1, 11))
    assert list(line.get_ydata()) == pytest.approx([0.1] * 8 + [0.21, 0.22])
    assert panel.get_title() == "FPN, t1: +0.1200 (fails)"  # 0.22 - 0.1 from epoch 8


def test_one_fold_and_seed_are_counted_in_the_singular():
    chosen = study(seeds=[1], folds={"t1": FOLDS["t1"]})
    assert pair_count(chosen) == "1 pair: 1 fold × 1 seed"
    assert pair_count(study()) == "4 pairs: 2 folds × 2 seeds"


def test_runs_with_extra_seeds_are_counted_with_their_pairs():
    extra = {"seeds": [3, 4], "runs": ["baseline", "baseline_equal", "focal"]}
    mixed = study(variants={"focal": {}, "ohem": {}}, extra_seeds=extra)
    assert pair_count(mixed) == "4 or 8 pairs: 2 folds × 2 or 4 seeds"
    everyone = study(extra_seeds=extra)  # every compared run has them: one count
    assert pair_count(everyone) == "8 pairs: 2 folds × 4 seeds"
    # The paper's baseline is compared too: without the extra seeds, it has fewer pairs.
    assert pair_count(study(extra_seeds=extra | {"runs": ["baseline_equal"]})) == (
        "4 pairs: 2 folds × 2 seeds"
    )
    assert pair_count(study(folds={}, extra_seeds=extra)) == "4 seeds"


def test_no_reference_history_is_refused():
    with pytest.raises(ValueError, match="no reference run's history"):
        convergence_figure({}, pd.DataFrame(), study())
