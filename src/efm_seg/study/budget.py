"""Sizing a study to a time budget from a measured training step (``scripts/gpu_study.py``).

The study's cost is its epochs: every seed trains both baselines and each variant (a one-run
variant the three stages' epochs together, a three-stage variant its EFM and fine-tuning
stages, sharing the seed's baseline). An epoch costs its optimiser steps, measured on the
device the study will run on, times :data:`EPOCH_OVERHEAD` for what else an epoch does
(validation, the EFM refresh pass, data loading, the EMA). The plan keeps as many of the
study's seeds as fit the budget, in order, then as many of its extra seeds (``study.extra_seeds``,
which train only the runs it lists) as fit what is left, and says what it assumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from efm_seg.models import ModelSpec, build_model
from efm_seg.parameters import StudyParams
from efm_seg.study.grid import cells, is_one_run

EPOCH_OVERHEAD = 1.5
"""An epoch's wall time over its optimiser steps' (validation, EFM refresh, data, EMA): an
estimate, checked against the measured wall time that the study script records."""


@dataclass(frozen=True)
class StudyPlan:
    """What a study costs, and the seeds that fit the budget."""

    seconds_per_step: float
    steps_per_epoch: int
    epochs_per_seed: int
    seconds_per_seed: float
    budget_seconds: float
    seeds: list[int]
    dropped_seeds: list[int]
    epochs_per_extra_seed: int = 0
    seconds_per_extra_seed: float = 0.0
    extra_seeds: list[int] = field(default_factory=list)
    dropped_extra_seeds: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """The planned training time of the seeds kept."""
        return self.seconds_per_seed * len(self.seeds) + self.seconds_per_extra_seed * len(
            self.extra_seeds
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "epoch_overhead": EPOCH_OVERHEAD}


def epochs_per_seed(study: Any, seed: int | None = None) -> int:
    """The epochs one seed of ``study`` trains (default: its first), over its architectures and
    folds."""
    study = StudyParams.model_validate(study)
    seed = study.seeds[0] if seed is None else seed
    return sum(
        study.epochs.total if is_one_run(study, cell.run) else getattr(study.epochs, cell.stage)
        for cell in cells(study)
        if cell.seed == seed
    )


def plan_study(
    study: Any, seconds_per_step: float, steps_per_epoch: int, budget_seconds: float
) -> StudyPlan:
    """The first of ``study.seeds`` that fit ``budget_seconds`` (always at least one: a plan
    over budget says so in ``seconds_per_seed``), then, once all of them fit, the first of
    ``study.extra_seeds.seeds`` that fit what is left."""
    study = StudyParams.model_validate(study)
    per_epoch = steps_per_epoch * seconds_per_step * EPOCH_OVERHEAD
    epochs = epochs_per_seed(study)
    per_seed = epochs * per_epoch
    fitting = max(1, min(len(study.seeds), math.floor(budget_seconds / per_seed)))
    extra = study.extra_seeds.seeds if study.extra_seeds else []
    extra_epochs = epochs_per_seed(study, extra[0]) if extra else 0
    per_extra = extra_epochs * per_epoch
    extra_fitting = 0
    if extra and fitting == len(study.seeds):
        left = budget_seconds - fitting * per_seed
        extra_fitting = max(0, min(len(extra), math.floor(left / per_extra)))
    return StudyPlan(
        seconds_per_step=seconds_per_step,
        steps_per_epoch=steps_per_epoch,
        epochs_per_seed=epochs,
        seconds_per_seed=per_seed,
        budget_seconds=budget_seconds,
        seeds=list(study.seeds[:fitting]),
        dropped_seeds=list(study.seeds[fitting:]),
        epochs_per_extra_seed=extra_epochs,
        seconds_per_extra_seed=per_extra,
        extra_seeds=list(extra[:extra_fitting]),
        dropped_extra_seeds=list(extra[extra_fitting:]),
    )


def measure_step_seconds(
    spec: ModelSpec,
    size: int,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    steps: int = 5,
    warmup: int = 2,
) -> float:
    """Seconds per optimiser step of ``spec`` on random ``batch_size × size²`` batches: forward
    (under ``dtype`` autocast, e.g. bf16 on CUDA), cross-entropy, backward, AdamW."""
    device = torch.device(device)
    model = build_model(spec).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch_size, spec.in_channels, size, size, device=device)
    labels = torch.randint(0, spec.num_classes, (batch_size, size, size), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps
