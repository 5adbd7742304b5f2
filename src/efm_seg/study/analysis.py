"""The study's analysis: per-seed scores, mean ± std, and paired differences against the
equal-budget baseline with a t confidence interval. A fold and a seed pair the runs: the same
split, the same initial weights and data order up to what the run changes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

# The study's metrics (paper §3.2 and beyond): macro mIoU, support-weighted IoU and F1 (the
# paper's), Boundary IoU, and calibration: the expected calibration error and the NLL, before
# and after temperature scaling (fitted on each cell's validation split; a calibration gain
# counts only if it survives the scaling of both sides). Lower is better for calibration.
METRICS: dict[str, str] = {
    "miou": "mIoU",
    "iou": "IoU (weighted)",
    "f1": "F1 (weighted)",
    "boundary_iou": "Boundary IoU",
    "ece": "ECE",
    "ece_scaled": "ECE (T-scaled)",
    "nll": "NLL",
    "nll_scaled": "NLL (T-scaled)",
}
LOWER_IS_BETTER = frozenset({"ece", "ece_scaled", "nll", "nll_scaled"})
KEYS = ["arch", "run", "stage"]
PAIR = ["fold", "seed"]
"""What pairs a run's cell with the reference's: the same fold and seed."""


def per_seed_table(scores: pd.DataFrame, tta: bool) -> pd.DataFrame:
    """One row per architecture, run, stage, fold and seed: the metrics at the chosen TTA
    setting."""
    chosen = scores[scores["tta"].astype(bool) == tta]
    if "fold" not in chosen:  # scores of cells from before folds: the project's split
        chosen = chosen.assign(fold="split")
    columns = [*KEYS, *PAIR, *METRICS, "checkpoint_epoch", "checkpoint_run"]
    # reindex: cells scored before calibration was measured have NaN there.
    table = chosen.reindex(columns=columns)
    return table.sort_values([*KEYS, *PAIR], kind="stable").reset_index(drop=True)


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (n - 1) and count of each metric per run and stage, over its
    folds and seeds (``seeds``: how many fold × seed cells)."""
    grouped = per_seed.groupby(KEYS, sort=False)[list(METRICS)]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    count = grouped.size().rename("seeds")
    return pd.concat([mean, std, count], axis=1).reset_index()


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """Mean and two-sided ``confidence`` t interval of ``values`` (NaN bounds for one value)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1) * stats.sem(data))
    return mean, mean - half, mean + half


def detectable_difference(sd: float, pairs: int, confidence: float, power: float = 0.8) -> float:
    """The smallest true mean difference a paired t test over ``pairs`` pairs whose differences
    spread with standard deviation ``sd`` detects with probability ``power``, two-sided at level
    ``1 - confidence``: ``(t_(1-α/2) + t_power) · sd / √n`` with ``n - 1`` degrees of freedom
    (NaN for fewer than two pairs)."""
    if pairs < 2 or not math.isfinite(sd):
        return math.nan
    freedom = pairs - 1
    quantiles = stats.t.ppf(0.5 + confidence / 2, freedom) + stats.t.ppf(power, freedom)
    return float(quantiles * sd / math.sqrt(pairs))


def paired_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of a paired t test that the mean difference is 0 (NaN for fewer than
    two pairs; 1 when every difference is 0, 0 when they are all the same non-zero value)."""
    data = np.asarray(differences, dtype=float)
    if len(data) < 2:
        return math.nan
    if np.ptp(data) == 0:  # no spread: the t statistic is 0/0 or ±inf
        return 1.0 if data[0] == 0 else 0.0
    return float(stats.ttest_1samp(data, 0.0).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN ones left out of the family
    and kept NaN): the family-wise error rate stays at the level for any dependence."""
    order = [i for i in np.argsort(p_values, kind="stable") if not math.isnan(p_values[i])]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def pair_differences(per_seed: pd.DataFrame, reference: str, reference_stage: str) -> pd.DataFrame:
    """Each cell's difference from the reference's cell of its architecture, fold and seed.

    Runs are paired by fold and seed, never by row position: rows may come in any order, and a
    fold and seed missing on either side is left out, as is a metric either cell was not scored
    on (NaN).

    Returns:
        One row per architecture, run, stage, fold, seed and metric (``difference``: run minus
        reference), runs in their order in ``per_seed``, pairs sorted.
    """
    rows = []
    for arch, group in per_seed.groupby("arch", sort=False):
        ref = _by_pair(group[(group["run"] == reference) & (group["stage"] == reference_stage)])
        for (run, stage), entries in group.groupby(["run", "stage"], sort=False):
            if run == reference:
                continue
            runs = _by_pair(entries)
            for fold, seed in sorted(set(runs.index) & set(ref.index)):
                for metric in METRICS:
                    difference = runs.at[(fold, seed), metric] - ref.at[(fold, seed), metric]
                    if not math.isnan(difference):
                        rows.append(
                            {
                                "arch": arch, "run": run, "stage": stage, "fold": fold,
                                "seed": seed, "metric": metric, "difference": float(difference),
                            }
                        )  # fmt: skip
    return pd.DataFrame(rows, columns=[*KEYS, *PAIR, "metric", "difference"])


def paired_differences(
    per_seed: pd.DataFrame, reference: str, reference_stage: str, confidence: float
) -> pd.DataFrame:
    """Each run's and stage's differences from the reference run of its architecture (paired by
    fold and seed, :func:`pair_differences`), put together.

    Returns:
        One row per architecture, run, stage and metric: the mean difference, its confidence
        interval, the pairs (fold × seed, ``seeds``), how many favour the run (``better``:
        higher, or lower for ECE), the paired differences' standard deviation (``sd``) and
        the smallest difference this many pairs detect at 80 % power (``detectable``,
        :func:`detectable_difference`), the paired t test's two-sided p-value (``p``) and the
        same adjusted by Holm's method over every run and stage compared on that metric for
        that architecture (``p_holm``): with many runs compared, one interval in twenty
        excludes 0 by chance at 95 %.
    """
    rows = []
    pairs = pair_differences(per_seed, reference, reference_stage)
    for (arch, run, stage), block in pairs.groupby(KEYS, sort=False):
        for metric in METRICS:
            diffs = block.loc[block["metric"] == metric, "difference"].to_numpy()
            if not len(diffs):
                continue
            mean, low, high = t_interval(diffs, confidence)
            sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
            sign = -1 if metric in LOWER_IS_BETTER else 1
            rows.append(
                {
                    "arch": arch,
                    "run": run,
                    "stage": stage,
                    "metric": metric,
                    "difference": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "confidence": confidence,
                    "seeds": len(diffs),
                    "better": int(sum(sign * d > 0 for d in diffs)),
                    "sd": sd,
                    "detectable": detectable_difference(sd, len(diffs), confidence),
                    "p": paired_p_value(diffs),
                }
            )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = table.groupby(["arch", "metric"], sort=False)["p"].transform(
            lambda p: holm(list(p))
        )
    return table


def per_fold_differences(
    per_seed: pd.DataFrame, reference: str, reference_stage: str
) -> pd.DataFrame:
    """Each run's and stage's difference from the reference, fold by fold: the mean over the
    fold's seeds of the paired differences (:func:`pair_differences`), so that an effect
    carried by one area shows as such.

    Returns:
        One row per architecture, run, stage, fold and metric: ``difference`` and ``seeds``
        (the pairs in that fold).
    """
    pairs = pair_differences(per_seed, reference, reference_stage)
    rows = []
    for (arch, run, stage, fold), block in pairs.groupby([*KEYS, "fold"], sort=False):
        for metric in METRICS:
            diffs = block.loc[block["metric"] == metric, "difference"]
            if len(diffs):
                rows.append(
                    {
                        "arch": arch, "run": run, "stage": stage, "fold": fold,
                        "metric": metric, "difference": float(diffs.mean()),
                        "seeds": len(diffs),
                    }
                )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["arch", "run", "stage", "fold", "metric", "difference", "seeds"]
    )


def _by_pair(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows if "fold" in rows else rows.assign(fold="split")
    return rows.set_index(PAIR)
