"""Study nodes: train and score each cell of the grid, then compare the runs across seeds."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from efm_seg.basics.mappings import as_mapping
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import (
    DatasetParams,
    EFMMethodParams,
    EvaluationParams,
    SplitParams,
    StageOverrides,
    StudyParams,
    TrainingParams,
)
from efm_seg.study.cells import StudySummary
from efm_seg.study.grid import REFERENCE, Cell, cell_recipe, cells, recipe_fingerprint
from efm_seg.training.resume import StateFile


def cell_trainer(cell: Cell):
    """:func:`~efm_seg.training.stage.train_stage` for one cell, as a plain function
    (its signature and type hints stay visible to Kedro's parameter validation)."""

    def train(
        samples: SampleStore,
        split: pd.DataFrame,
        dataset: DatasetParams,
        efm_method: EFMMethodParams,
        training: TrainingParams,
        stage_overrides: StageOverrides,
        study: StudyParams,
        run_info: dict[str, Any],
        training_state: StateFile,
        init_checkpoint: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], pd.DataFrame]:
        # torch: imported when the node runs, never when the CLI registers the pipelines.
        from efm_seg.training.stage import train_stage

        recipe, overrides, method = cell_recipe(
            study, cell, training, as_mapping(stage_overrides), efm_method
        )
        checkpoint, history, _, _ = train_stage(
            cell.name, samples, split, dataset, method, recipe, overrides, run_info,
            init_checkpoint, training_state,
        )  # fmt: skip
        return checkpoint, history

    train.__name__ = train.__qualname__ = f"train_{cell.stage}"
    train.__doc__ = f"Train {cell.name} (see cell_recipe and train_stage)."
    return train


def cell_evaluator(cell: Cell):
    """Score one cell's best checkpoint on the evaluation split, without and with TTA."""

    def evaluate(
        checkpoint: dict[str, Any],
        samples: SampleStore,
        split: pd.DataFrame,
        dataset: DatasetParams,
        evaluation: EvaluationParams,
        run_info: dict[str, Any],
    ) -> pd.DataFrame:
        from efm_seg.evaluation.scoring import evaluate_stage

        settings = as_mapping(evaluation) | {"tta": True, "qualitative": {"count": 0}}
        overall, _, _ = evaluate_stage(
            cell.name, checkpoint, samples, split, dataset, settings, run_info
        )
        return overall.assign(
            arch=cell.arch,
            fold=cell.fold,
            seed=cell.seed,
            run=cell.run,
            stage=cell.stage,
            recipe=recipe_fingerprint(checkpoint["config"]),
        )

    evaluate.__name__ = evaluate.__qualname__ = "evaluate"
    evaluate.__doc__ = f"Score {cell.name}'s best checkpoint (see evaluate_stage)."
    return evaluate


def fold_splitter(fold: str):
    """The split of one fold of ``study.folds``: its patterns' samples in val and test, every
    other sample in train (:func:`efm_seg.data.split.assign_splits`, ``rest: train``)."""

    def split_fold(
        encoded_index: pd.DataFrame, study: StudyParams, split: SplitParams
    ) -> pd.DataFrame:
        from efm_seg.data.split import assign_splits

        study, split = StudyParams.model_validate(study), SplitParams.model_validate(split)
        table = assign_splits(
            encoded_index,
            split.fractions.model_dump(),  # not used: every sample no pattern names trains
            seed=split.seed,
            group_by=split.group_by,
            predefined=study.folds[fold],
            rest="train",
        )
        for name in ("val", "test"):
            if not (table["split"] == name).any():
                raise ValueError(
                    f"study.folds.{fold}: no sample matches its {name} pattern(s) "
                    f"{[p for p, s in study.folds[fold].items() if s == name]}"
                )
        return table

    split_fold.__name__ = split_fold.__qualname__ = f"split_{fold}"
    split_fold.__doc__ = f"The split of the study's fold {fold} (see fold_splitter)."
    return split_fold


def check_convergence(
    study: StudyParams, *reference_histories: pd.DataFrame
) -> tuple[pd.DataFrame, Figure, dict[str, Any]]:
    """Whether the equal-budget baseline had converged (see
    :func:`efm_seg.study.convergence.convergence_table`), from its histories in the order of
    :func:`reference_cells`.

    Returns:
        The convergence table, its figure (the validation curves,
        :func:`efm_seg.study.plot.convergence_figure`), and the record of the runs it was
        judged from (``{"runs": {cell name: run id}, "rule": study.convergence}``, see
        :func:`efm_seg.framework.hooks.study_grid.refresh_stale_convergence`).
    """
    from efm_seg.study.convergence import convergence_table, history_run
    from efm_seg.study.plot import convergence_figure

    study = StudyParams.model_validate(study)
    histories = dict(zip(reference_cells(study), reference_histories, strict=True))
    table = convergence_table(histories, study.convergence)
    return (
        table,
        convergence_figure(histories, table, study),
        {
            "runs": {cell.name: history_run(history) for cell, history in histories.items()},
            "rule": study.convergence.model_dump(),
        },
    )


def summarize_study(
    study: StudyParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    baseline_overrides: StageOverrides,
    efm_overrides: StageOverrides,
    finetune_overrides: StageOverrides,
    convergence: pd.DataFrame,
    *cell_scores: pd.DataFrame,
) -> StudySummary:
    """Put the study's cells together (see :func:`efm_seg.study.summary.summarize`)."""
    # scipy (the intervals): imported when the node runs, not when the CLI starts.
    from efm_seg.study.summary import summarize

    return summarize(
        study, training, efm_method, baseline_overrides, efm_overrides, finetune_overrides,
        convergence, *cell_scores,
    )  # fmt: skip


def reference_cells(study: StudyParams) -> list[Cell]:
    """The equal-budget baseline's cells, one per architecture, fold and seed, in grid order."""
    return [cell for cell in cells(study) if cell.run == REFERENCE]
