"""Post-hoc temperature scaling (Guo et al., "On calibration of modern neural networks", 2017):
one scalar ``T > 0`` divides the logits, ``softmax(z / T)``, fitted on the validation split by
minimising the negative log-likelihood. It changes no prediction (the argmax of ``z / T`` is
that of ``z``), only the confidence; it is the cheap baseline any calibration claim must beat.

The temperature is fitted when a stage's checkpoint is made (stored as ``temperature``, with the
validation NLL before and after in ``calibration``), and used by evaluation (ECE and NLL with and
without it), the ONNX export (its probabilities) and wherever probabilities are written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from efm_seg.evaluation.metrics import BinnedCalibrationError

MAX_PIXELS = 2_000_000
"""The validation pixels a temperature is fitted on at most (a seeded sample beyond): a 1-D
fit needs far fewer, and 2 M pixels × classes of float32 logits stay in memory."""

BOUNDS = (0.05, 20.0)
"""The temperatures a fit may return: beyond them the logits are degenerate (all equal, or one
class certain everywhere), and the fit says nothing useful."""


def collect_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[dict[str, torch.Tensor]],
    device: torch.device | str,
    ignore_index: int | None,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits ``(N, C)`` float32 and labels ``(N,)`` of the valid pixels of ``batches``
    (``image``, ``mask``), on the CPU: at most ``max_pixels``, a seeded uniform sample beyond."""
    logits, labels = [], []
    with torch.no_grad():
        for batch in batches:
            out = model(batch["image"].to(device)).float()
            mask = batch["mask"].to(out.device)
            valid = (
                torch.ones_like(mask, dtype=torch.bool)
                if ignore_index is None
                else (mask != ignore_index)
            )
            logits.append(out.permute(0, 2, 3, 1)[valid].cpu())
            labels.append(mask[valid].cpu())
    logits_all, labels_all = torch.cat(logits), torch.cat(labels).long()
    if len(labels_all) > max_pixels:
        chosen = torch.randperm(len(labels_all), generator=torch.Generator().manual_seed(seed))[
            :max_pixels
        ]
        logits_all, labels_all = logits_all[chosen], labels_all[chosen]
    return logits_all, labels_all


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    return float(F.cross_entropy(logits.float() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising :func:`nll` on ``logits`` ``(N, C)`` and ``labels`` ``(N,)``:
    L-BFGS on ``log T`` from ``T = 1``, within :data:`BOUNDS`; 1.0 for no pixels."""
    if len(labels) == 0:
        return 1.0
    logits = logits.float()
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, BOUNDS[0]), BOUNDS[1])


class CalibrationScores:
    """ECE (the evaluation's: top-1, equal-width bins) and NLL of probabilities over batches.

    Args:
        num_classes: ``C``.
        ignore_index: The label no score reads.
        bins: ECE bins.
    """

    def __init__(self, num_classes: int, ignore_index: int | None, bins: int) -> None:
        self.ignore_index = ignore_index
        self.ece = BinnedCalibrationError(
            num_classes, n_bins=bins, norm="l1", ignore_index=ignore_index
        )
        self.total, self.count = 0.0, 0

    @torch.no_grad()
    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``probs`` ``(B, C, H, W)``, ``target`` ``(B, H, W)``."""
        target = target.to(probs.device, torch.long)
        if self.ece.device != probs.device:
            self.ece.to(probs.device)
        self.ece.update(probs, target)
        valid = target != self.ignore_index if self.ignore_index is not None else None
        true = probs.gather(1, target.clamp(0, probs.shape[1] - 1)[:, None])[:, 0]
        picked = true if valid is None else true[valid]
        self.total += float(-picked.clamp_min(1e-12).log().sum())
        self.count += picked.numel()

    def compute(self) -> dict[str, float]:
        """``{"ece": ..., "nll": ...}`` (NaN for no pixels)."""
        if self.count == 0:
            return {"ece": math.nan, "nll": math.nan}
        return {"ece": float(self.ece.compute()), "nll": self.total / self.count}
