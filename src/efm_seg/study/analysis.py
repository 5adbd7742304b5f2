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


def paired_differences(
    per_seed: pd.DataFrame, reference: str, reference_stage: str, confidence: float
) -> pd.DataFrame:
    """Each run's and stage's per-seed difference from the reference run of its architecture.

    Runs are paired by fold and seed, never by row position: rows may come in any order, and a
    fold and seed missing on either side is left out of that comparison.

    Returns:
        One row per architecture, run, stage and metric: the mean difference, its confidence
        interval, the pairs (fold × seed, ``seeds``), how many favour the run (``better``:
        higher, or lower for ECE), the paired differences' standard deviation (``sd``) and
        the smallest difference this many pairs detect at 80 % power (``detectable``,
        :func:`detectable_difference`).
    """
    rows = []
    for arch, group in per_seed.groupby("arch", sort=False):
        ref = group[(group["run"] == reference) & (group["stage"] == reference_stage)]
        ref = _by_pair(ref)
        for (run, stage), entries in group.groupby(["run", "stage"], sort=False):
            if run == reference:
                continue
            runs = _by_pair(entries)
            seeds = sorted(set(runs.index) & set(ref.index))
            for metric in METRICS:
                diffs = [runs.at[s, metric] - ref.at[s, metric] for s in seeds]
                diffs = [d for d in diffs if not math.isnan(d)]  # a cell not scored on it
                if not diffs:
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
                    }
                )
    return pd.DataFrame(rows)


def per_fold_differences(
    per_seed: pd.DataFrame, reference: str, reference_stage: str
) -> pd.DataFrame:
    """Each run's and stage's difference from the reference, fold by fold: the mean over the
    fold's seeds of the paired differences (paired by fold and seed, as
    :func:`paired_differences`), so that an effect carried by one area shows as such.

    Returns:
        One row per architecture, run, stage, fold and metric: ``difference`` and ``seeds``
        (the pairs in that fold).
    """
    rows = []
    for arch, group in per_seed.groupby("arch", sort=False):
        ref = _by_pair(group[(group["run"] == reference) & (group["stage"] == reference_stage)])
        for (run, stage), entries in group.groupby(["run", "stage"], sort=False):
            if run == reference:
                continue
            runs = _by_pair(entries)
            pairs = sorted(set(runs.index) & set(ref.index))
            for fold in dict.fromkeys(f for f, _ in pairs):
                in_fold = [pair for pair in pairs if pair[0] == fold]
                for metric in METRICS:
                    diffs = [runs.at[p, metric] - ref.at[p, metric] for p in in_fold]
                    diffs = [d for d in diffs if not math.isnan(d)]
                    if diffs:
                        rows.append(
                            {
                                "arch": arch, "run": run, "stage": stage, "fold": fold,
                                "metric": metric, "difference": float(np.mean(diffs)),
                                "seeds": len(diffs),
                            }
                        )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["arch", "run", "stage", "fold", "metric", "difference", "seeds"]
    )


def _by_pair(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows if "fold" in rows else rows.assign(fold="split")
    return rows.set_index(PAIR)
