"""Study nodes: train and score each cell of the grid, then compare the runs across seeds."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from efm_seg.data.samples import SampleStore
from efm_seg.parameters import (
    DatasetParams,
    EFMMethodParams,
    EvaluationParams,
    StageOverrides,
    StudyParams,
    TrainingParams,
    as_mapping,
)
from efm_seg.pipelines.evaluation.nodes import evaluate_stage
from efm_seg.pipelines.training.nodes import train_stage
from efm_seg.study.analysis import (
    METRICS,
    paired_differences,
    per_seed_table,
    summary_table,
)
from efm_seg.study.figures import ablation_figure
from efm_seg.study.grid import (
    REFERENCE,
    Cell,
    cell_recipe,
    cells,
    expected_fingerprint,
    recipe_fingerprint,
)
from efm_seg.study.report import study_markdown
from efm_seg.training.resume import StateFile

logger = logging.getLogger(__name__)

STAGES = ("baseline", "efm", "finetune")


def cell_trainer(cell: Cell):
    """:func:`~efm_seg.pipelines.training.nodes.train_stage` for one cell, as a plain function
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
        settings = as_mapping(evaluation) | {"tta": True, "qualitative": {"count": 0}}
        overall, _, _ = evaluate_stage(
            cell.name, checkpoint, samples, split, dataset, settings, run_info
        )
        return overall.assign(
            arch=cell.arch,
            seed=cell.seed,
            run=cell.run,
            stage=cell.stage,
            recipe=recipe_fingerprint(checkpoint["config"]),
        )

    evaluate.__name__ = evaluate.__qualname__ = "evaluate"
    evaluate.__doc__ = f"Score {cell.name}'s best checkpoint (see evaluate_stage)."
    return evaluate


class StaleCellError(ValueError):
    """A cell's saved scores do not belong to the current configuration or lineage."""


def check_cells(
    scores: pd.DataFrame,
    study: StudyParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    stage_overrides: dict[str, Any],
    require_all: bool = True,
) -> None:
    """Refuse scores of a cell trained with another recipe, or from another parent.

    A study continued with ``--only-missing-outputs`` keeps the cells it finished before; if the
    configuration changed in between, those cells would silently mix two studies.

    Args:
        scores: The cells' score rows (one per cell).
        study, training, efm_method: The current parameter blocks.
        stage_overrides: ``<stage>.overrides`` per stage.
        require_all: Every cell of the grid must have scores (else only those given are
            checked).
    """
    by_cell = {(row.arch, row.seed, row.run, row.stage): row for row in scores.itertuples()}
    problems = []
    for cell in cells(study):
        row = by_cell.get((cell.arch, cell.seed, cell.run, cell.stage))
        if row is None:
            if require_all:
                problems.append(f"{cell.name}: no scores")
            continue
        expected = expected_fingerprint(
            study, cell, training, stage_overrides[cell.stage], efm_method
        )
        if row.recipe != expected:
            problems.append(
                f"{cell.name}: trained (run {row.checkpoint_run}) with another recipe than the "
                "current configuration"
            )
        parent = cell.parent
        if row.init_stage and parent is not None:
            source = by_cell.get((parent.arch, parent.seed, parent.run, parent.stage))
            if source is None or row.init_run != source.checkpoint_run:
                problems.append(
                    f"{cell.name}: started from run {row.init_run} of {parent.name}, whose "
                    f"scored checkpoint is from run {getattr(source, 'checkpoint_run', None)}"
                )
    if problems:
        raise StaleCellError(
            "the study's saved cells do not form one study: "
            + "; ".join(problems[:8])
            + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            + ". Run the study again without --only-missing-outputs, or remove those cells' "
            "folders under 06_models/study and 07_model_output/study so that they train again"
        )


def _lineage_as_text(scores: pd.DataFrame) -> pd.DataFrame:
    # A CSV reads an empty lineage field (a cell started from new weights) back as NaN.
    lineage = ["checkpoint_run", "init_stage", "init_run"]
    return scores.assign(**{c: scores[c].fillna("").astype(str) for c in lineage})


def check_kept_cells(pipeline, catalog) -> None:
    """Before a study continues (``--only-missing-outputs``), refuse the cells it would keep
    that the current configuration would train differently, before anything runs.

    Without this, Kedro would skip every finished cell, retrain only the missing ones and mix
    two configurations in one comparison (or, with the summary already written, do nothing).
    """
    names = [node.name.removesuffix(".evaluate") for node in pipeline.nodes]
    kept = [Cell.from_name(n) for n in names if n.startswith("study.") and n.count(".") == 4]
    kept = [cell for cell in kept if catalog.exists(f"{cell.name}.scores")]
    if not kept:
        return
    scores = pd.concat([catalog.load(f"{cell.name}.scores") for cell in kept], ignore_index=True)
    check_cells(
        _lineage_as_text(scores[~scores["tta"].astype(bool)]),
        catalog.load("params:study"),
        catalog.load("params:training"),
        catalog.load("params:efm_method"),
        {stage: catalog.load(f"params:{stage}.overrides") for stage in STAGES},
        require_all=False,
    )


def _scored_runs(scores: pd.DataFrame) -> dict[str, str]:
    """``{cell name: run id of its scored checkpoint}`` from the cells' score rows."""
    rows = scores.drop_duplicates(["arch", "seed", "run", "stage"])
    return {
        Cell(row.arch, int(row.seed), row.run, row.stage).name: str(row.checkpoint_run)
        for row in rows.itertuples()
    }


def _summary_settings(study: StudyParams) -> dict[str, Any]:
    """The study settings that change a summary of the same cells."""
    return {"tta": study.tta, "confidence": study.confidence}


def _some(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def refresh_stale_summary(pipeline, catalog) -> None:
    """Before a study continues (``--only-missing-outputs``), make sure its summary is computed
    again if it no longer describes the grid's cells.

    Kedro skips a node whose outputs exist, even when its inputs are about to change: after
    variants or seeds are added or removed, or a cell is trained again, the new cells would be
    trained and the old summary kept. ``study.cells`` records the cells (and the run of each
    scored checkpoint) the summary was computed from, and its settings (``tta``,
    ``confidence``); when they differ from what this run will summarize, that record is
    removed, so that ``study.summarize`` counts as missing and runs.
    """
    summarize = next((n for n in pipeline.nodes if n.name == "study.summarize"), None)
    if summarize is None or not catalog.exists("study.cells"):
        return
    record = catalog.load("study.cells")
    made_from: dict[str, str] = record["cells"]
    grid = [name.removesuffix(".scores") for name in summarize.inputs if name.endswith(".scores")]
    runs = {
        name: str(catalog.load(f"{name}.scores")["checkpoint_run"].iloc[0])
        for name in grid
        if catalog.exists(f"{name}.scores")
    }
    settings = _summary_settings(StudyParams.model_validate(catalog.load("params:study")))
    changes = {
        "added": [name for name in grid if name not in made_from],
        "removed": [name for name in made_from if name not in grid],
        "trained again": [
            name for name in grid if name in made_from and runs.get(name) != made_from[name]
        ],
        "settings changed": [
            f"{key}={value}" for key, value in settings.items()
            if record.get("settings", {}).get(key) != value
        ],
    }  # fmt: skip
    if not any(changes.values()):
        return
    logger.warning(
        "the study's summary no longer matches its cells (%s): study.summarize runs again",
        "; ".join(f"{what}: {_some(names)}" for what, names in changes.items() if names),
    )
    catalog.get("study.cells").remove()


def summarize_study(
    study: StudyParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    baseline_overrides: StageOverrides,
    efm_overrides: StageOverrides,
    finetune_overrides: StageOverrides,
    *cell_scores: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, Figure, dict[str, Any]]:
    """Put the study's cells together.

    Returns:
        The per-seed scores, mean ± std per run and stage, the paired differences against the
        equal-budget baseline (``baseline_equal``) with their confidence intervals, the
        Markdown tables, the ablation figure, and the record of the cells summarized
        (``{"cells": {cell name: run id of its scored checkpoint}}``, see
        :func:`refresh_stale_summary`).

    Raises:
        StaleCellError: A cell was trained with another recipe, or from another parent
            checkpoint, than the current configuration and the other cells say.
    """
    study = StudyParams.model_validate(study)
    scores = _lineage_as_text(pd.concat(cell_scores, ignore_index=True))
    overrides = {
        "baseline": as_mapping(baseline_overrides),
        "efm": as_mapping(efm_overrides),
        "finetune": as_mapping(finetune_overrides),
    }
    check_cells(scores[~scores["tta"].astype(bool)], study, training, efm_method, overrides)
    per_seed = per_seed_table(scores, tta=study.tta)
    summary = summary_table(per_seed)
    paired = paired_differences(per_seed, REFERENCE, "baseline", study.confidence)
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
        study_markdown(study, summary, paired, per_seed),
        ablation_figure(paired, study),
        {"cells": _scored_runs(scores), "settings": _summary_settings(study)},
    )
