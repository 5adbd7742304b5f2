"""A study's summary: its cells' scores compared across seeds (tables, paired differences
against the equal-budget baseline, figure and Markdown)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from efm_seg.basics.mappings import as_mapping
from efm_seg.parameters import EFMMethodParams, StageOverrides, StudyParams, TrainingParams
from efm_seg.study.analysis import (
    METRICS,
    pair_differences,
    paired_differences,
    per_fold_differences,
    per_seed_table,
    summary_table,
)
from efm_seg.study.cells import (
    StudySummary,
    check_cells,
    lineage_as_text,
    scored_runs,
    summary_settings,
)
from efm_seg.study.convergence import failing_folds, has_converged
from efm_seg.study.grid import REFERENCE
from efm_seg.study.markdown import study_markdown
from efm_seg.study.plot import ablation_figure

logger = logging.getLogger(__name__)


def summarize(
    study: StudyParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    baseline_overrides: StageOverrides,
    efm_overrides: StageOverrides,
    finetune_overrides: StageOverrides,
    convergence: pd.DataFrame,
    *cell_scores: pd.DataFrame,
) -> StudySummary:
    """Put the study's cells together.

    ``convergence`` says whether the equal-budget baseline had converged
    (:func:`~efm_seg.study.convergence.convergence_table`): it opens each architecture's tables,
    and a study that has not converged is warned about.

    Returns:
        The per-seed scores, mean ± std per run and stage, the paired differences against the
        equal-budget baseline (``baseline_equal``) with their confidence intervals, the same
        differences fold by fold (mean over each fold's seeds), the
        Markdown tables, the ablation figure, and the record of the cells summarized
        (``{"cells": {cell name: run id of its scored checkpoint}}``, see
        :func:`efm_seg.framework.hooks.study_grid.refresh_stale_summary`).

    Raises:
        StaleCellError: A cell was trained with another recipe, or from another parent
            checkpoint, than the current configuration and the other cells say.
    """
    study = StudyParams.model_validate(study)
    scores = lineage_as_text(pd.concat(cell_scores, ignore_index=True))
    overrides = {
        "baseline": as_mapping(baseline_overrides),
        "efm": as_mapping(efm_overrides),
        "finetune": as_mapping(finetune_overrides),
    }
    check_cells(scores[~scores["tta"].astype(bool)], study, training, efm_method, overrides)
    per_seed = per_seed_table(scores, tta=study.tta)
    summary = summary_table(per_seed)
    pairs = pair_differences(per_seed, REFERENCE, "baseline")
    paired = paired_differences(per_seed, REFERENCE, "baseline", study.confidence)
    per_fold = per_fold_differences(per_seed, REFERENCE, "baseline")
    if not has_converged(convergence, study.convergence):
        logger.warning(
            "the equal-budget baseline was still improving when it stopped on %s (more than "
            "the %d failing folds study.convergence allows): lengthen study.epochs before "
            "drawing an answer from this study",
            "; ".join(f"{arch}: {', '.join(folds)}" for arch, folds in
                      failing_folds(convergence).items() if folds),
            study.convergence.failing_folds,
        )  # fmt: skip
    for (arch, run, stage), row in summary.set_index(["arch", "run", "stage"]).iterrows():
        logger.info(
            "study %s %s/%s over %d seeds: %s",
            arch, run, stage, row["seeds"],
            ", ".join(
                f"{label} {row[f'{m}_mean']:.4f}±{np.nan_to_num(row[f'{m}_std']):.4f}"
                for m, label in METRICS.items()
            ),
        )  # fmt: skip
    return (
        per_seed,
        summary,
        paired,
        per_fold,
        study_markdown(study, summary, paired, per_seed, convergence, per_fold),
        ablation_figure(paired, pairs, study),
        {"cells": scored_runs(scores), "settings": summary_settings(study)},
    )
