"""The study: a grid of training runs (architectures × seeds × EFM variants) and its analysis."""

from efm_seg.study.analysis import METRICS, paired_differences, per_seed_table, summary_table
from efm_seg.study.grid import (
    BASELINE,
    REFERENCE,
    Cell,
    cell_recipe,
    cells,
    recipe_fingerprint,
    study_runs,
)

__all__ = [
    "BASELINE",
    "METRICS",
    "REFERENCE",
    "Cell",
    "cell_recipe",
    "cells",
    "paired_differences",
    "per_seed_table",
    "recipe_fingerprint",
    "study_runs",
    "summary_table",
]
