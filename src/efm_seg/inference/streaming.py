"""Sliding-window labelling of a scene of any size, band of rows by band of rows.

The same crops, weights and order as :func:`efm_seg.inference.sliding.sliding_window_probs`
(which this reproduces exactly), but the scene is read, and its labels given back, one band of
rows at a time: only the rows that a crop still reaches are held, as probabilities. Memory is
bounded by the window and the scene's width (about ``4·K·window·W`` bytes for K classes, plus
the band of pixels read), never by the scene's area.

Crops made only of nodata pixels are not predicted: the pixels they alone cover get no label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from efm_seg.basics.windows import check_window
from efm_seg.evaluation.tta import predict_probs
from efm_seg.inference.sliding import blend_weights, window_starts

ReadRows = Callable[[int, int], tuple[torch.Tensor, np.ndarray | None]]
"""``read(first, stop)``: rows ``first..stop-1`` of the scene as a normalised ``(C, h, W)``
float tensor, and which of their pixels hold data, ``(h, W)`` bool (``None``: all of them)."""


@dataclass(frozen=True)
class LabelledRows:
    """Rows ``first .. first + len(labels) - 1`` of a scene: the label of each pixel (the
    argmax of its blended probabilities) and whether it is valid (the scene has data there,
    and a crop predicted it)."""

    first: int
    labels: np.ndarray  # (h, W) int64
    valid: np.ndarray  # (h, W) bool


def window_count(height: int, width: int, window: int, overlap: int) -> int:
    """How many crops a ``height × width`` scene is cut into."""
    stride = window - overlap
    rows = window_starts(max(height, window), window, stride)
    columns = window_starts(max(width, window), window, stride)
    return len(rows) * len(columns)


@torch.inference_mode()
def label_rows(
    read: ReadRows,
    height: int,
    width: int,
    model: Callable[[torch.Tensor], torch.Tensor],
    *,
    window: int,
    overlap: int,
    tta: bool = False,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> Iterator[LabelledRows]:
    """The scene's labels, top to bottom, a band of rows at a time.

    Args:
        read: Reads a band of rows (see :data:`ReadRows`).
        height, width: The scene's size.
        model: Returns logits ``(N, K, h, w)`` for a batch ``(N, C, h, w)`` (eval mode).
        window, overlap: The crops' side and the pixels neighbouring crops share.
        tta: Average the four flips of each crop (eq. 13).
        batch_size: Crops per forward pass (×4 with TTA).
        device: Where the model runs.
        progress: Called with the number of crops done (predicted or skipped) after each batch.
    """
    check_window(window, overlap)
    stride = window - overlap
    padded_w = max(width, window)
    rows = window_starts(max(height, window), window, stride)
    columns = window_starts(padded_w, window, stride)
    weights = blend_weights(window, overlap)
    total: torch.Tensor | None = None  # probabilities of the open rows, from row `base`
    weight_sum = torch.zeros(0, padded_w)
    has_data = np.zeros((0, width), dtype=bool)  # the open rows' valid pixels
    base = 0
    for y in rows:
        if y > base:  # no later crop reaches rows base..y-1: they are final
            done = min(y, height) - base
            yield _finish(base, total, weight_sum, has_data, done, width)
            total = None if total is None else total[:, y - base :]
            weight_sum = weight_sum[y - base :]
            has_data = has_data[y - base :]
            base = y
        grow = y + window - base - weight_sum.shape[0]
        weight_sum = torch.cat([weight_sum, torch.zeros(grow, padded_w)])
        if total is not None:
            total = torch.cat([total, torch.zeros(total.shape[0], grow, padded_w)], dim=1)
        stop = min(y + window, height)
        image, valid = read(y, stop)
        has_data = np.concatenate(
            [has_data, np.zeros((stop - base - has_data.shape[0], width), dtype=bool)]
        )
        has_data[y - base :] = True if valid is None else valid
        image = _pad(image, window, padded_w)
        if valid is not None and (valid.shape[1] < padded_w or valid.shape[0] < window):
            valid = np.pad(
                valid, ((0, window - valid.shape[0]), (0, padded_w - valid.shape[1])), mode="edge"
            )
        crops = [
            x
            for x in columns
            if valid is None or bool(valid[:, x : x + window].any())  # empty crops: nodata
        ]
        for first in range(0, len(crops), batch_size):
            batch = crops[first : first + batch_size]
            stacked = torch.stack([image[:, :, x : x + window] for x in batch])
            probs = predict_probs(model, stacked.to(device), tta=tta).float().cpu()
            if total is None:
                total = torch.zeros(probs.shape[1], weight_sum.shape[0], padded_w)
            top = y - base
            for x, crop_probs in zip(batch, probs, strict=True):
                total[:, top : top + window, x : x + window] += crop_probs * weights
                weight_sum[top : top + window, x : x + window] += weights
            if progress is not None:
                progress(len(batch))
        if progress is not None and len(crops) < len(columns):
            progress(len(columns) - len(crops))
    yield _finish(base, total, weight_sum, has_data, height - base, width)


def _pad(image: torch.Tensor, window: int, padded_w: int) -> torch.Tensor:
    """A band of rows padded (edge pixels repeated) to the window's height and the padded width,
    as the whole-image inference pads a scene smaller than the window."""
    pad_h, pad_w = max(window - image.shape[1], 0), padded_w - image.shape[2]
    if pad_h or pad_w:
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    return image


def _finish(
    base: int,
    total: torch.Tensor | None,
    weight_sum: torch.Tensor,
    has_data: np.ndarray,
    rows: int,
    width: int,
) -> LabelledRows:
    valid = (weight_sum[:rows, :width] > 0).numpy() & has_data[:rows]
    if total is None:  # every crop of these rows was nodata
        labels = np.zeros((rows, width), dtype=np.int64)
    else:
        probs = total[:, :rows, :width] / weight_sum[:rows, :width].clamp_min(1e-12)
        labels = probs.argmax(0).numpy()
    return LabelledRows(base, labels, valid)
