"""The losses of stages trained without EFM (``training.criterion``): the paper's baseline
objective and what a user would pick instead of EFM, each called as ``loss(logits, target,
efm=None)`` like :class:`efm_seg.efm.EFMLoss` (which stays eq. 10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from efm_seg.efm import EFMLoss
from efm_seg.efm.loss import topk_mean

BASELINE_KEYS = ("lambda_ce", "lambda_dice", "label_smoothing")
"""The keys of ``efm_method.loss`` that eq. 6 (``ce_dice``) reads."""


def baseline_loss(classes: int, ignore_index: int | None, loss: Mapping[str, Any]) -> EFMLoss:
    """Eq. 6, ``λ1·CE + λ2·Dice``: :class:`EFMLoss` without EFM, boundary term or top-k."""
    return EFMLoss(
        classes,
        ignore_index=ignore_index,
        gamma=0.0,
        topk_ratio=1.0,
        **{key: loss[key] for key in BASELINE_KEYS if key in loss},
    )


class TopKCrossEntropy(nn.Module):
    """OHEM: the per-image mean of the ``topk_ratio`` largest pixel cross-entropies (eq. 11
    without EFM weights; :func:`efm_seg.efm.loss.topk_mean`)."""

    def __init__(self, topk_ratio: float, ignore_index: int | None) -> None:
        super().__init__()
        self.topk_ratio, self.ignore_index = topk_ratio, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, efm=None) -> torch.Tensor:
        ignore = -100 if self.ignore_index is None else self.ignore_index
        pixels = F.cross_entropy(logits.float(), target, ignore_index=ignore, reduction="none")
        valid = None if self.ignore_index is None else target != self.ignore_index
        return topk_mean(pixels, self.topk_ratio, valid)


class _WithoutEFM(nn.Module):
    """An smp loss called as the trainer calls its criterion (the EFM argument unused)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor, efm=None) -> torch.Tensor:
        return self.loss(logits.float(), target)


def build_criterion(
    criterion: Mapping[str, Any],
    classes: int,
    ignore_index: int | None,
    loss: Mapping[str, Any],
) -> nn.Module:
    """The loss ``training.criterion`` names (validated by
    :class:`efm_seg.parameters.CriterionParams`).

    Args:
        criterion: ``training.criterion``: ``name`` and its settings.
        classes: The number of classes.
        ignore_index: The label value no loss reads.
        loss: ``efm_method.loss`` (eq. 6's λ and label smoothing for ``ce_dice``).
    """
    name = criterion["name"]
    if name == "ce_dice":
        return baseline_loss(classes, ignore_index, loss)
    if name == "ohem":
        return TopKCrossEntropy(criterion["topk_ratio"], ignore_index)
    if name == "focal":
        gamma = criterion["focal_gamma"]
        return _WithoutEFM(
            smp.losses.FocalLoss(smp.losses.MULTICLASS_MODE, gamma=gamma, ignore_index=ignore_index)
        )
    if name == "lovasz":
        return _WithoutEFM(
            smp.losses.LovaszLoss(smp.losses.MULTICLASS_MODE, ignore_index=ignore_index)
        )
    raise ValueError(f"training.criterion.name: {name!r} is not a criterion")
