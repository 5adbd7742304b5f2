"""The evidence study's power rule (README "Power"), judged blind.

Reads the latest scores of the one-run EFM cells and of the reference, pairs them by fold and
seed as the study does (:func:`efm_seg.study.analysis.pair_differences`), and prints only how
many pairs there are, the paired standard deviation of their mIoU differences, and what the
rule, fixed before any result was seen, then says. Neither side's mean nor the mean difference
is printed: the answer is read from the summary once the grid is complete. The rule was judged
on seeds 1 and 2; the seeds it added (3 and 4) are left out, so that the check reads as it did.

    .venv/bin/python docs/study/2026-12-06-evidence/power_check.py [STUDY_OUTPUT_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from efm_seg.study.analysis import pair_differences, per_seed_table

ROOT = Path(__file__).resolve().parents[3] / "data" / "evidence" / "07_model_output" / "study"
RUN, REFERENCE = "efm_one_run", "baseline_equal"
FOLDS, SEEDS = 6, (1, 2)
SD_LIMIT = 0.011  # above it, seeds 3 and 4 are added


def latest_scores(root: Path, run: str) -> pd.DataFrame:
    """Every fold's and seed's latest scores of ``run`` (the versioned ``scores.csv``)."""
    tables = []
    for cell in sorted(root.glob(f"*/*/seed*/{run}/baseline/scores.csv")):
        versions = sorted(p for p in cell.iterdir() if (p / "scores.csv").is_file())
        if versions:
            tables.append(pd.read_csv(versions[-1] / "scores.csv"))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def main(root: Path) -> int:
    scores = pd.concat([latest_scores(root, RUN), latest_scores(root, REFERENCE)])
    if scores.empty:
        print(f"no scores under {root}")
        return 1
    pairs = pair_differences(per_seed_table(scores, tta=True), REFERENCE, "baseline")
    chosen = (pairs["run"] == RUN) & (pairs["metric"] == "miou") & pairs["seed"].isin(SEEDS)
    mious = pairs[chosen]["difference"]
    wanted = FOLDS * len(SEEDS)
    print(f"{len(mious)} of {wanted} pairs ({RUN} against {REFERENCE}, mIoU, with TTA)")
    if len(mious) < wanted:
        print("the rule is judged on all of them: wait for the rest")
        return 2
    sd = float(np.std(mious.to_numpy(), ddof=1))
    verdict = "add seeds 3 and 4" if sd > SD_LIMIT else "the 12 pairs stand"
    print(f"paired sd of the mIoU differences: {sd:.4f} (limit {SD_LIMIT}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
