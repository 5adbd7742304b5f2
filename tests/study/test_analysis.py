"""The study's statistics: mean ± std and paired differences with t intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from efm_seg.study.analysis import METRICS, paired_differences, summary_table


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
