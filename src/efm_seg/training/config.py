"""Training configuration: the paper's recipe as one validated object per stage.

A stage's settings are the shared ``training`` block with the stage's own overrides merged in
(``baseline``, ``efm`` and ``finetune`` in ``conf/base/parameters_<stage>.yml``), so the three
stages differ only in what they override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import ValidationError

from efm_seg.parameters import (
    EFMMethodParams,
    StageOverrides,
    TrainingParams,
    deep_merge,
    describe,
    resolve_device,
    stage_recipe,
)

__all__ = ["ConfigError", "EFMSchedule", "TrainConfig", "deep_merge"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
EFMSource = Literal["per_sample", "online", "validation_prior"]


class ConfigError(ValueError):
    """A training parameter is missing, unknown or out of range; the message names it."""


@dataclass(frozen=True)
class EFMSchedule:
    """When the EFM is (re)computed: at ``start_epoch``, then every ``every`` epochs (1-based).

    The paper (§2.3 step 3, §3.3) recomputes "every two epochs, starting from the fifth"; before
    ``start_epoch`` the loss runs without an EFM. Epoch numbers count from 1.
    """

    enabled: bool = False
    source: EFMSource = "per_sample"
    update: Literal["refresh", "step"] = "refresh"
    start_epoch: int = 5
    every: int = 2
    warmup_epochs: int = 0

    def describe(self) -> str:
        """How the EFM is made, for the log."""
        if self.source == "per_sample" and self.update == "step":
            text = f"per_sample from each training step, used from epoch {self.start_epoch}"
        elif self.source == "online":
            text = f"online from epoch {self.start_epoch}"
        else:
            text = f"{self.source} from epoch {self.start_epoch}, refreshed every {self.every}"
        if self.warmup_epochs:
            text += f", full strength after a {self.warmup_epochs}-epoch warm-up"
        return text

    def collects_from_steps(self, epoch: int) -> bool:
        """Whether ``epoch``'s training steps fill the per-sample store (``update: step``): from
        the epoch before ``start_epoch``, so the maps are ready when the loss first uses them."""
        return (
            self.enabled
            and self.source == "per_sample"
            and self.update == "step"
            and epoch >= self.start_epoch - 1
        )

    def is_refresh_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0

    def active(self, epoch: int) -> bool:
        """Whether the loss uses an EFM in ``epoch``."""
        return self.enabled and epoch >= self.start_epoch

    def strength(self, epoch: int) -> float:
        """The warm-up's fraction of full EFM strength in ``epoch`` (1.0 once warmed up):
        ``k / (warmup_epochs + 1)`` in the k-th epoch with an EFM, so no epoch is a no-op."""
        if not self.active(epoch):
            return 0.0
        return min(1.0, (epoch - self.start_epoch + 1) / (self.warmup_epochs + 1))


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training stage needs; built by :meth:`from_params`."""

    stage: str
    arch: str
    encoder: str
    encoder_weights: str | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    scheduler: Literal["cosine", "none"]
    grad_clip: float | None
    precision: Precision
    ema_enabled: bool
    ema_decay: float
    device: str
    seed: int
    num_workers: int
    augment: dict[str, Any]
    efm: EFMSchedule
    snapshot_count: int
    init_from: Literal["previous"] | None
    loss: dict[str, Any] = field(default_factory=dict)
    efm_map: dict[str, Any] = field(default_factory=dict)
    resume: bool = True
    resume_every: int = 1
    normalization: Literal["auto", "imagenet", "dataset"] = "auto"
    distributed: dict[str, Any] = field(default_factory=dict)  # training.distributed

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
        return cls(
            stage=stage,
            arch=recipe.model.arch,
            encoder=recipe.model.encoder,
            encoder_weights=recipe.model.encoder_weights,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.optimizer.lr,
            weight_decay=recipe.optimizer.weight_decay,
            scheduler=recipe.scheduler,
            grad_clip=recipe.grad_clip or None,
            precision=recipe.precision,
            ema_enabled=recipe.ema.enabled,
            ema_decay=recipe.ema.decay,
            device=recipe.device,
            seed=recipe.seed,
            num_workers=recipe.num_workers,
            augment=dict(recipe.augment),
            efm=EFMSchedule(**recipe.efm.model_dump()),
            snapshot_count=recipe.snapshots.count,
            init_from=recipe.init_from,
            loss=method.loss.model_dump(),
            efm_map=method.map.model_dump(),
            resume=recipe.resume.enabled,
            resume_every=recipe.resume.every,
            normalization=recipe.normalization,
            distributed=recipe.distributed.model_dump(),
        )

    def resolve_device(self) -> torch.device:
        """``auto``: CUDA when available, else the CPU."""
        return resolve_device(self.device)

    def resolve_precision(self, device: torch.device) -> tuple[torch.dtype | None, bool]:
        """The autocast dtype (``None`` = fp32) and whether a gradient scaler is needed.

        ``auto`` is fp32 on the CPU (bf16 autocast is slower than fp32 on most CPUs) and, on CUDA,
        bf16 where the GPU supports it, else fp16 with a gradient scaler.
        """
        precision = self.precision
        if precision == "auto":
            if device.type != "cuda":
                return None, False
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if precision == "fp32":
            return None, False
        if precision == "bf16":
            return torch.bfloat16, False
        if device.type != "cuda":
            raise ConfigError(
                f"{self.stage}.training.precision: fp16 needs a CUDA device; use bf16 or fp32 "
                f"on {device.type}"
            )
        return torch.float16, True
