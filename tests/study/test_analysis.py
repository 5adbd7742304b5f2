"""The study's statistics: mean ± std and paired differences with t intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from efm_seg.study.analysis import (
    METRICS,
    detectable_difference,
    holm,
    pair_differences,
    paired_differences,
    per_fold_differences,
    summary_table,
)


def per_seed_rows(values: dict[tuple[str, str], list[float]], ece_shift=0.0) -> pd.DataFrame:
    rows = []
    for (run, stage), series in values.items():
        for seed, value in zip((1, 2, 3), series, strict=True):
            rows.append(
                {"arch": "FPN", "run": run, "stage": stage, "seed": seed}
                | {m: value for m in METRICS}
                | {"ece": 0.1 + ece_shift * (run != "baseline_equal")}
            )
    return pd.DataFrame(rows)


def test_paired_differences_pair_by_seed_with_a_t_interval():
    ref = [0.50, 0.60, 0.55]
    run = [0.52, 0.65, 0.54]
    table = paired_differences(
        per_seed_rows({("baseline_equal", "baseline"): ref, ("full", "finetune"): run}),
        "baseline_equal",
        "baseline",
        0.9,
    )
    miou = table[(table["run"] == "full") & (table["metric"] == "miou")].iloc[0]
    diffs = np.subtract(run, ref)
    half = stats.t.ppf(0.95, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert miou["difference"] == pytest.approx(diffs.mean())
    assert miou["ci_low"] == pytest.approx(diffs.mean() - half)
    assert miou["ci_high"] == pytest.approx(diffs.mean() + half)
    assert (miou["seeds"], miou["better"]) == (3, 2)
    assert set(table["run"]) == {"full"}  # the reference is not compared with itself


def test_pairs_are_made_by_seed_whatever_the_row_order_and_missing_seeds_left_out():
    ref = {1: 0.50, 2: 0.60, 3: 0.55, 4: 0.40}
    run = {3: 0.56, 1: 0.53, 2: 0.61}  # another order, and no seed 4
    rows = [
        {"arch": "FPN", "run": name, "stage": stage, "seed": seed} | {m: value for m in METRICS}
        for name, stage, values in (
            ("full", "finetune", run),
            ("baseline_equal", "baseline", ref),
        )
        for seed, value in values.items()
    ]
    table = paired_differences(pd.DataFrame(rows[::-1]), "baseline_equal", "baseline", 0.95)
    miou = table[table["metric"] == "miou"].iloc[0]
    diffs = [0.53 - 0.50, 0.61 - 0.60, 0.56 - 0.55]
    assert miou["seeds"] == 3
    assert miou["difference"] == pytest.approx(np.mean(diffs))
    assert miou["sd"] == pytest.approx(np.std(diffs, ddof=1))
    assert miou["detectable"] == pytest.approx(detectable_difference(miou["sd"], 3, 0.95))


def test_the_detectable_difference_is_the_paired_t_tests_at_80_percent_power():
    # (t_0.975,9 + t_0.8,9) · sd / √10, by hand: (2.2622 + 0.8834) · 0.01 / 3.1623.
    assert detectable_difference(0.01, 10, 0.95) == pytest.approx(0.009947, abs=2e-6)
    # Four times the pairs: about half the difference.
    assert detectable_difference(0.01, 40, 0.95) == pytest.approx(0.0045, abs=2e-4)
    assert np.isnan(detectable_difference(0.01, 1, 0.95))


def test_a_lower_ece_counts_as_better():
    table = paired_differences(
        per_seed_rows(
            {("baseline_equal", "baseline"): [0.5] * 3, ("full", "finetune"): [0.5] * 3},
            ece_shift=-0.02,
        ),
        "baseline_equal",
        "baseline",
        0.95,
    )
    ece = table[table["metric"] == "ece"].iloc[0]
    assert ece["difference"] == pytest.approx(-0.02)
    assert ece["better"] == 3


def test_summary_is_mean_and_sample_std_per_run_and_stage():
    summary = summary_table(
        per_seed_rows({("baseline_equal", "baseline"): [0.5, 0.6, 0.7], ("full", "efm"): [0.1] * 3})
    )
    row = summary[summary["run"] == "baseline_equal"].iloc[0]
    assert row["miou_mean"] == pytest.approx(0.6)
    assert row["miou_std"] == pytest.approx(0.1)
    assert row["seeds"] == 3


def test_per_fold_differences_pair_by_fold_and_seed_and_average_within_the_fold():
    ref = {("a", 1): 0.50, ("a", 2): 0.60, ("b", 1): 0.30, ("b", 2): 0.40, ("c", 1): 0.2}
    run = {("b", 2): 0.46, ("a", 2): 0.61, ("b", 1): 0.31, ("a", 1): 0.55}  # no fold c
    rows = [
        {"arch": "FPN", "run": name, "stage": stage, "fold": fold, "seed": seed}
        | dict.fromkeys(METRICS, value)
        for name, stage, values in (("ohem", "baseline", run), ("baseline_equal", "baseline", ref))
        for (fold, seed), value in values.items()
    ]
    rows[1]["boundary_iou"] = float("nan")  # fold a seed 2 not scored on Boundary IoU
    table = per_fold_differences(pd.DataFrame(rows), "baseline_equal", "baseline")
    miou = table[table["metric"] == "miou"].set_index("fold")
    assert sorted(miou.index) == ["a", "b"]  # fold c has no pair
    assert miou.loc["a", "difference"] == pytest.approx((0.05 + 0.01) / 2)
    assert miou.loc["b", "difference"] == pytest.approx((0.01 + 0.06) / 2)
    assert (miou["seeds"] == 2).all() and set(table["run"]) == {"ohem"}
    boundary = table[table["metric"] == "boundary_iou"].set_index("fold")
    assert boundary.loc["a", "seeds"] == 1
    assert boundary.loc["a", "difference"] == pytest.approx(0.05)


def test_each_pairs_difference_is_kept_by_fold_and_seed():
    ref = {("a", 1): 0.50, ("a", 2): 0.60, ("b", 1): 0.30}
    run = {("b", 1): 0.36, ("a", 2): 0.61}  # another order, no (a, 1)
    rows = [
        {"arch": "FPN", "run": name, "stage": "baseline", "fold": fold, "seed": seed}
        | dict.fromkeys(METRICS, value)
        for name, values in (("focal", run), ("baseline_equal", ref))
        for (fold, seed), value in values.items()
    ]
    rows[0]["ece"] = float("nan")  # (b, 1) not scored on ECE
    table = pair_differences(pd.DataFrame(rows), "baseline_equal", "baseline")
    miou = table[table["metric"] == "miou"]
    assert list(zip(miou["fold"], miou["seed"], strict=True)) == [("a", 2), ("b", 1)]
    assert list(miou["difference"]) == pytest.approx([0.01, 0.06])
    ece = table[table["metric"] == "ece"]
    assert list(ece["fold"]) == ["a"]  # a NaN is no difference


def test_holm_adjusts_a_family_step_down_and_leaves_nan_out():
    assert holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx(
        [0.03, 0.06, 0.06, float("nan")], nan_ok=True
    )
    assert holm([0.2, 0.3]) == pytest.approx([0.4, 0.4])  # never below an earlier step
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_each_comparison_has_its_paired_t_tests_p_value_adjusted_over_the_runs():
    ref = [0.50, 0.60, 0.55]
    runs = {
        ("ohem", "baseline"): [0.52, 0.65, 0.58],
        ("focal", "baseline"): [0.49, 0.61, 0.54],
        ("lovasz", "baseline"): [0.50, 0.60, 0.55],  # no difference at all
    }
    table = paired_differences(
        per_seed_rows({("baseline_equal", "baseline"): ref} | runs),
        "baseline_equal",
        "baseline",
        0.95,
    )
    miou = table[table["metric"] == "miou"].set_index("run")
    for (run, _), values in runs.items():
        diffs = np.subtract(values, ref)
        expected = 1.0 if not diffs.any() else stats.ttest_1samp(diffs, 0.0).pvalue
        assert miou.loc[run, "p"] == pytest.approx(expected)
    assert list(miou["p_holm"]) == pytest.approx(holm(list(miou["p"])))
    assert (miou["p_holm"] >= miou["p"]).all() and miou["p_holm"].gt(miou["p"]).any()
    # Another metric is another family.
    ece = table[table["metric"] == "ece"].set_index("run")
    assert list(ece["p_holm"]) == pytest.approx(holm(list(ece["p"])))


def test_the_power_table_shows_the_holm_adjusted_p_value():
    from efm_seg.parameters import StudyParams
    from efm_seg.study.markdown import study_markdown

    study = StudyParams.model_validate(
        {
            "architectures": ["FPN"],
            "seeds": [1, 2, 3],
            "epochs": {"baseline": 4, "efm": 4, "finetune": 2},
            "variants": {"ohem": {}},
        }
    )
    per_seed = per_seed_rows(
        {("baseline_equal", "baseline"): [0.50, 0.60, 0.55], ("ohem", "baseline"): [0.6] * 3}
    ).assign(fold="split")
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    text = study_markdown(study, summary_table(per_seed), paired, per_seed)
    power = text[text.index("### Power") :]
    header = next(line for line in power.splitlines() if line.startswith("| run"))
    assert "mIoU p (Holm)" in header and "Boundary IoU p (Holm)" in header
    row = next(line for line in power.splitlines() if line.startswith("| ohem"))
    p = paired.set_index("metric").loc["miou", "p_holm"]
    assert f"{p:.3f}" in row


def test_the_tables_say_which_runs_have_extra_seeds_and_pair_each_on_its_own():
    from efm_seg.parameters import StudyParams
    from efm_seg.study.markdown import study_markdown

    study = StudyParams.model_validate(
        {
            "architectures": ["FPN"],
            "seeds": [1, 2],
            "extra_seeds": {"seeds": [3], "runs": ["baseline_equal", "ohem"]},
            "epochs": {"baseline": 4, "efm": 4, "finetune": 2},
            "variants": {"ohem": {"single_run": True}, "focal": {"single_run": True}},
        }
    )
    per_seed = per_seed_rows(
        {
            ("baseline_equal", "baseline"): [0.50, 0.60, 0.55],
            ("ohem", "baseline"): [0.52, 0.61, 0.50],
            ("focal", "baseline"): [0.49, 0.62, 0.0],
        }
    ).assign(fold="split")
    per_seed = per_seed[(per_seed["run"] != "focal") | (per_seed["seed"] != 3)]
    paired = paired_differences(per_seed, "baseline_equal", "baseline", 0.95)
    assert dict(paired.loc[paired["metric"] == "miou", ["run", "seeds"]].values) == {
        "ohem": 3,
        "focal": 2,
    }
    text = study_markdown(study, summary_table(per_seed), paired, per_seed)
    assert "seeds [1, 2] (and 3 for `baseline_equal`, `ohem`);" in text
    assert "averaged over more cells" in text
    differences = text[text.index("### Paired difference") : text.index("### Power")]
    differences = differences.splitlines()
    row = {line.split("|")[1].strip(): line for line in differences if line.startswith("| ")}
    assert " 1/2 " in row["focal (one run)"] and " 2/3 " in row["ohem (one run)"]
    by_seed = text[text.index("### mIoU per seed") :].splitlines()
    focal = next(line for line in by_seed if line.startswith("| focal"))
    assert focal.rstrip(" |").endswith("–")  # no seed 3
