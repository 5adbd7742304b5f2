"""Training configuration: one stage's recipe, as the trainer reads it.

The parameter schemas of :mod:`efm_seg.parameters` are the one definition of every training
setting (names, types, defaults, rules). A stage's recipe is the shared ``training`` block with
the stage's own overrides merged in (``baseline``, ``efm`` and ``finetune`` in
``conf/base/parameters_<stage>.yml``), so the three stages differ only in what they override;
:class:`TrainConfig` holds that validated recipe and ``efm_method``, and derives everything
else from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from efm_seg.parameters import (
    EFMMethodParams,
    EFMScheduleParams,
    StageOverrides,
    TrainingParams,
    describe,
    stage_recipe,
)

__all__ = ["NOT_RECIPE", "ConfigError", "EFMSchedule", "TrainConfig"]

EFMSchedule = EFMScheduleParams
"""When the EFM is (re)computed, and how (``training.efm``)."""

NOT_RECIPE = ("stage", "device", "num_workers", "resume", "resume_every", "distributed")
"""The keys of :meth:`TrainConfig.record` that say where and how a stage runs rather than what
it learns: left out of a recipe's fingerprint (the study's kept cells) and of the key a saved
training state must match to be resumed (another device or process count may resume it)."""


class ConfigError(ValueError):
    """A training parameter is missing, unknown or out of range; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training stage needs; built by :meth:`from_params`.

    Attributes:
        stage: The stage's name (``baseline``, ``efm``, ``finetune`` or a study cell), used
            in messages.
        recipe: ``training`` with the stage's overrides merged in, validated.
        method: ``efm_method``: the EFM map's and the loss's constants.
    """

    stage: str
    recipe: TrainingParams
    method: EFMMethodParams = field(default_factory=EFMMethodParams)

    @classmethod
    def from_params(
        cls,
        stage: str,
        training: Mapping[str, Any] | TrainingParams,
        overrides: Mapping[str, Any] | StageOverrides | None,
        efm_method: Mapping[str, Any] | EFMMethodParams,
    ) -> TrainConfig:
        """Merge a stage's overrides into the shared ``training`` block (both validated by
        their schemas in :mod:`efm_seg.parameters`).

        Args:
            stage: The stage name (``baseline``, ``efm``, ``finetune``), used in messages.
            training: ``params:training``, the shared recipe.
            overrides: ``params:<stage>.overrides``, what this stage changes.
            efm_method: ``params:efm_method`` (``map`` and ``loss`` of ``efm_seg.efm``).

        Raises:
            ConfigError: naming ``<stage>.training.<key>``, its value and what is allowed.
        """
        try:
            recipe = stage_recipe(training, overrides)
        except ValidationError as exc:
            raise ConfigError(describe(exc, f"{stage}.training")) from None
        try:
            method = EFMMethodParams.model_validate(efm_method or {})
        except ValidationError as exc:
            raise ConfigError(describe(exc, "efm_method")) from None
        return cls(stage=stage, recipe=recipe, method=method)

    # -- what the trainer reads, derived from the recipe --------------------------------------
    @property
    def arch(self) -> str:
        return self.recipe.model.arch

    @property
    def encoder(self) -> str:
        return self.recipe.model.encoder

    @property
    def encoder_weights(self) -> str | None:
        return self.recipe.model.encoder_weights

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def batch_size(self) -> int:
        return self.recipe.batch_size

    @property
    def lr(self) -> float:
        return self.recipe.optimizer.lr

    @property
    def weight_decay(self) -> float:
        return self.recipe.optimizer.weight_decay

    @property
    def scheduler(self) -> str:
        return self.recipe.scheduler

    @property
    def grad_clip(self) -> float | None:
        return self.recipe.grad_clip or None

    @property
    def precision(self) -> str:
        return self.recipe.precision

    @property
    def ema_enabled(self) -> bool:
        return self.recipe.ema.enabled

    @property
    def ema_decay(self) -> float:
        return self.recipe.ema.decay

    @property
    def device(self) -> str:
        return self.recipe.device

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def num_workers(self) -> int:
        return self.recipe.num_workers

    @property
    def augment(self) -> dict[str, Any]:
        return dict(self.recipe.augment)

    @property
    def efm(self) -> EFMSchedule:
        return self.recipe.efm

    @property
    def snapshot_count(self) -> int:
        return self.recipe.snapshots.count

    @property
    def init_from(self) -> str | None:
        return self.recipe.init_from

    @property
    def loss(self) -> dict[str, Any]:
        return self.method.loss.model_dump()

    @property
    def efm_map(self) -> dict[str, Any]:
        return self.method.map.model_dump()

    @property
    def resume(self) -> bool:
        return self.recipe.resume.enabled

    @property
    def resume_every(self) -> int:
        return self.recipe.resume.every

    @property
    def normalization(self) -> str:
        return self.recipe.normalization

    @property
    def distributed(self):
        return self.recipe.distributed

    @property
    def criterion(self) -> dict[str, Any]:
        return self.recipe.criterion.model_dump()

    @property
    def checkpoint(self) -> str:
        return self.recipe.checkpoint

    def record(self) -> dict[str, Any]:
        """The stage's settings as plain values: what its checkpoint records as ``config``
        (and the report's recipe table shows), one flat key per setting."""
        return {
            "stage": self.stage,
            "arch": self.arch,
            "encoder": self.encoder,
            "encoder_weights": self.encoder_weights,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "scheduler": self.scheduler,
            "grad_clip": self.grad_clip,
            "precision": self.precision,
            "ema_enabled": self.ema_enabled,
            "ema_decay": self.ema_decay,
            "device": self.device,
            "seed": self.seed,
            "num_workers": self.num_workers,
            "augment": self.augment,
            "efm": self.efm.model_dump(),
            "snapshot_count": self.snapshot_count,
            "init_from": self.init_from,
            "loss": self.loss,
            "efm_map": self.efm_map,
            "resume": self.resume,
            "resume_every": self.resume_every,
            "normalization": self.normalization,
            "distributed": self.distributed.model_dump(),
            "criterion": self.criterion,
            "checkpoint": self.checkpoint,
        }


def recipe_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """A :meth:`TrainConfig.record` (or a checkpoint's ``config``) without :data:`NOT_RECIPE`."""
    return {key: value for key, value in record.items() if key not in NOT_RECIPE}
