"""The study's grid: which runs it trains and the exact recipe of each.

A *run* is one line of the ablation: the paper's ``baseline`` stage alone, the equal-budget
``baseline_equal`` (the baseline recipe for as many epochs as the three stages together), an
EFM variant (its EFM stage, then its fine-tuning stage), or a one-run variant (``single_run``:
the equal-budget baseline with its changes, e.g. EFM from ``start_epoch`` or another loss).
A *cell* is one stage of one run for one architecture, fold and seed (every run trains
``study.seeds``; the runs ``study.extra_seeds`` lists train its seeds too); each cell is a training
node under the namespace ``study.<arch>.<fold>.seed<seed>.<run>.<stage>``. The fold is ``split``
(the project's split) unless ``study.folds`` names folds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from efm_seg.basics.lineage import config_fingerprint
from efm_seg.basics.mappings import as_mapping, deep_merge
from efm_seg.parameters import (
    PROJECT_SPLIT,
    STUDY_BASELINES,
    StudyParams,
    TrainingParams,
    describe,
    stage_recipe,
)
from efm_seg.training.config import TrainConfig, recipe_of

BASELINE, REFERENCE = STUDY_BASELINES
EFM_STAGES = ("efm", "finetune")


@dataclass(frozen=True)
class Cell:
    """One stage of one run, for one architecture, fold and seed."""

    arch: str
    fold: str
    seed: int
    run: str
    stage: str

    @classmethod
    def from_name(cls, name: str) -> Cell:
        """The cell of a name ``study.<arch>.<fold>.seed<seed>.<run>.<stage>``."""
        parts = name.split(".")
        if len(parts) != 6 or parts[0] != "study" or not parts[3].startswith("seed"):
            raise ValueError(
                f"{name!r} is not a study cell (study.<arch>.<fold>.seed<s>.<run>.<stage>)"
            )
        return cls(parts[1], parts[2], int(parts[3].removeprefix("seed")), parts[4], parts[5])

    @property
    def namespace(self) -> str:
        """``study.<arch>.<fold>.seed<seed>.<run>``: the run's nodes and catalog entries."""
        return f"study.{self.arch}.{self.fold}.seed{self.seed}.{self.run}"

    @property
    def name(self) -> str:
        """``<namespace>.<stage>``: the stage's node namespace and dataset prefix."""
        return f"{self.namespace}.{self.stage}"

    @property
    def split(self) -> str:
        """The catalog entry of the split it trains and is scored on: the project's ``split``,
        or its fold's (``study.folds.<fold>.split``)."""
        return PROJECT_SPLIT if self.fold == PROJECT_SPLIT else fold_split(self.fold)

    @property
    def parent(self) -> Cell | None:
        """The cell whose best checkpoint this one may start from (``init_from: previous``):
        fine-tuning starts from its run's EFM stage, an EFM stage from the seed's baseline."""
        if self.stage == "finetune":
            return Cell(self.arch, self.fold, self.seed, self.run, "efm")
        if self.stage == "efm":
            return Cell(self.arch, self.fold, self.seed, BASELINE, "baseline")
        return None


def fold_split(fold: str) -> str:
    """The catalog entry of a fold's split."""
    return f"study.folds.{fold}.split"


def study_runs(study: StudyParams) -> dict[str, tuple[str, ...]]:
    """Each run of the study and its stages, baselines first."""
    return {
        BASELINE: ("baseline",),
        REFERENCE: ("baseline",),
        **{
            name: ("baseline",) if variant.single_run else EFM_STAGES
            for name, variant in study.variants.items()
        },
    }


def is_one_run(study: StudyParams, run: str) -> bool:
    """Whether ``run`` trains the three stages' epochs in one run (the equal-budget baseline, a
    ``single_run`` variant)."""
    return run == REFERENCE or (run in study.variants and study.variants[run].single_run)


def cells(study: Any) -> Iterator[Cell]:
    """Every cell of the grid, in a stable order (architecture, fold, seed, run, stage): each run
    on its own seeds (``study.seeds``, and ``study.extra_seeds`` for the runs it lists)."""
    study = StudyParams.model_validate(study)
    runs = study_runs(study)
    for arch in study.architectures:
        for fold in study.fold_names:
            for seed in study.all_seeds:
                for run, stages in runs.items():
                    if seed in study.run_seeds(run):
                        for stage in stages:
                            yield Cell(arch, fold, seed, run, stage)


def cell_recipe(
    study: Any,
    cell: Cell,
    training: Any,
    stage_overrides: Mapping[str, Any],
    efm_method: Any,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``training``, stage overrides and ``efm_method`` one cell trains with.

    The paper's stage recipe (``<stage>.overrides`` of the configuration), then the study's own
    ``study.overrides.<stage>`` and ``study.epochs.<stage>`` (the equal-budget baseline and
    one-run variants: the three stages' epochs together), then the variant's ``training`` and
    ``<stage>`` changes; the architecture and seed are the cell's.

    Args:
        study: ``params:study``.
        cell: The cell.
        training: ``params:training``.
        stage_overrides: ``params:<stage>.overrides`` for the cell's stage.
        efm_method: ``params:efm_method``.
    """
    study = StudyParams.model_validate(study)
    base = deep_merge(as_mapping(training), {"model": {"arch": cell.arch}, "seed": cell.seed})
    one_run = is_one_run(study, cell.run)
    epochs = study.epochs.total if one_run else getattr(study.epochs, cell.stage)
    overrides = deep_merge(as_mapping(stage_overrides), study.overrides.get(cell.stage, {}))
    overrides = deep_merge(overrides, {"epochs": epochs})
    method = as_mapping(efm_method)
    if cell.run not in (BASELINE, REFERENCE):
        variant = study.variants[cell.run]
        overrides = deep_merge(overrides, variant.training)
        if not variant.single_run:
            overrides = deep_merge(overrides, getattr(variant, cell.stage))
        method = deep_merge(method, variant.efm_method)
    return base, overrides, method


def recipe_fingerprint(config: Mapping[str, Any]) -> str:
    """The fingerprint of a trained stage's recipe (a checkpoint's ``config``, or
    ``TrainConfig.record()``), without where and how it ran (``NOT_RECIPE``)."""
    return config_fingerprint(recipe_of(config))


def expected_fingerprint(
    study: Any,
    cell: Cell,
    training: Any,
    stage_overrides: Mapping[str, Any],
    efm_method: Any,
) -> str:
    """The recipe fingerprint the cell's checkpoint must carry under the current configuration."""
    config = TrainConfig.from_params(
        cell.name, *cell_recipe(study, cell, training, stage_overrides, efm_method)
    )
    return recipe_fingerprint(config.record())


def checked_cell_recipe(name: str, params: Callable[[str], Any]) -> TrainingParams:
    """The recipe of the study cell ``name`` (``study.<arch>.seed<s>.<run>.<stage>``), refused
    when an EFM stage's EFM would never switch on (``start_epoch`` after its last epoch).

    Args:
        name: The cell's name.
        params: Returns a parameter block by name (``study``, ``training``, ...).
    """
    cell = Cell.from_name(name)
    training, overrides, _ = cell_recipe(
        params("study"),
        cell,
        params("training"),
        as_mapping(params(f"{cell.stage}.overrides")),
        params("efm_method"),
    )
    try:
        recipe = stage_recipe(training, overrides)
    except ValidationError as exc:
        raise ValueError(describe(exc, f"{name}.training")) from None
    if recipe.efm.enabled and recipe.efm.start_epoch > recipe.epochs:
        raise ValueError(
            f"{name}: the EFM starts at epoch {recipe.efm.start_epoch} but the stage trains "
            f"{recipe.epochs} epochs, so it would train without EFM; set study.overrides."
            f"{cell.stage}.efm.start_epoch (or study.epochs.{cell.stage})"
        )
    return recipe
