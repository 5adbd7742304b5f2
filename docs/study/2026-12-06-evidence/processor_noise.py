"""How much a seeded cell changes when it trains on another processor, from validation IoU only.

The twelve reference runs (6 folds × seeds 1 and 2, 180 epochs) trained once on an AMD EPYC (the
grid lost with that machine, ``convergence_180.csv``) and again on an Intel Xeon
(``convergence_180_xeon.csv``), with the same seeds and configuration. Floating-point kernels
differ between the processors, so the runs part from the first epoch. This compares each run's
last-epoch validation IoU on the two, against the difference between a fold's two seeds on one
processor, and writes ``processor_noise.csv`` (per fold and seed: both values and Xeon − EPYC):

    .venv/bin/python docs/study/2026-12-06-evidence/processor_noise.py

It reads no test score.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = {"epyc": "convergence_180.csv", "xeon": "convergence_180_xeon.csv"}


def processor_noise(folder: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per fold and seed, the last validation IoU on each processor and their difference; and
    the difference's mean and standard deviation beside that of seed 2 − seed 1 per processor."""
    last = {
        name: pd.read_csv(folder / file).set_index(["fold", "seed"])["val_iou_last"]
        for name, file in RUNS.items()
    }
    table = pd.DataFrame(last).dropna()
    table["xeon_minus_epyc"] = table["xeon"] - table["epyc"]
    summary = {
        "cells": float(len(table)),
        "mean": float(table["xeon_minus_epyc"].mean()),
        "sd": float(table["xeon_minus_epyc"].std()),
    }
    for name in RUNS:
        seeds = table[name].unstack("seed")
        summary[f"seed_sd_{name}"] = float((seeds[2] - seeds[1]).std())
    return table.reset_index(), summary


def main(folder: Path = HERE) -> int:
    table, summary = processor_noise(folder)
    table.to_csv(folder / "processor_noise.csv", index=False)
    print(
        f"{int(summary['cells'])} runs on both processors: Xeon − EPYC last validation IoU "
        f"mean {summary['mean']:+.4f}, sd {summary['sd']:.4f}; seed 2 − seed 1 on one processor: "
        f"sd {summary['seed_sd_epyc']:.4f} (EPYC), {summary['seed_sd_xeon']:.4f} (Xeon)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
