"""Sliding-window labelling of a scene of any size, in blocks, with memory that does not grow
with the scene.

The same crops, weights and order as :func:`efm_seg.inference.sliding.sliding_window_probs`
(which this reproduces), but the scene is read one crop at a time, and its labels are given back
one row of crops at a time. Within a row of crops, only the columns that a crop still reaches
are held as probabilities (about ``batch_size + 1`` windows wide); between rows, only the
``overlap`` rows that the next row of crops shares (``4·(K+1)·overlap·W`` bytes for K classes).
What is yielded is labels, two bytes a pixel. So memory is set by the window, the batch and,
weakly, the scene's width (a few MB per 10,000 columns), never by its area.

Crops made only of nodata pixels are not predicted: the pixels they alone cover get no label.

With a ``temperature``, each block also carries its pixels' confidence: the top class's
probability after post-hoc temperature scaling of the blended probabilities,
``max softmax(log p / T)``. It leaves the labels as they are; where one crop alone covers a
pixel without TTA it is exactly the checkpoint's calibrated ``max softmax(logits / T)``.
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

ReadBlock = Callable[[int, int, int, int], tuple[torch.Tensor, np.ndarray | None]]
"""``read(top, bottom, left, right)``: the scene's pixels in rows ``top..bottom-1`` and columns
``left..right-1``, as a normalised ``(C, h, w)`` float tensor, and which of them hold data,
``(h, w)`` bool (``None``: all of them)."""

LABEL_DTYPE = np.int16  # class positions: up to 32,767 classes, two bytes a pixel


@dataclass(frozen=True)
class LabelledBlock:
    """A block of a scene from row ``top`` and column ``left``: the label of each pixel (the
    argmax of its blended probabilities, as ``int16`` class positions), whether it is valid
    (the scene has data there, and a crop predicted it) and, when asked for, the top class's
    temperature-scaled probability (see the module docstring)."""

    top: int
    left: int
    labels: np.ndarray  # (h, w) int16
    valid: np.ndarray  # (h, w) bool
    confidence: np.ndarray | None = None  # (h, w) float32 in [0, 1]


def window_count(height: int, width: int, window: int, overlap: int) -> int:
    """How many crops a ``height × width`` scene is cut into."""
    stride = window - overlap
    rows = window_starts(max(height, window), window, stride)
    columns = window_starts(max(width, window), window, stride)
    return len(rows) * len(columns)


@dataclass
class _Shared:
    """The sums of the rows that the next row of crops shares with this one, over the padded
    width: probabilities ``(K, h, W)`` (``None`` until a crop is predicted) and weights."""

    total: torch.Tensor | None
    weight_sum: torch.Tensor


def crop_rows(height: int, window: int, overlap: int) -> list[list[int]]:
    """The starts of the rows of crops, grouped as they are labelled: one row at a time, but the
    last row of crops (moved back to end at the scene's edge) with the row before it, which it
    overlaps by more than ``overlap``. So each group hands on exactly ``overlap`` rows."""
    starts = window_starts(max(height, window), window, window - overlap)
    if len(starts) > 1 and starts[-1] - starts[-2] < window - overlap:
        return [[start] for start in starts[:-2]] + [starts[-2:]]
    return [[start] for start in starts]


@torch.inference_mode()
def label_blocks(
    read: ReadBlock,
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
    temperature: float | None = None,
) -> Iterator[LabelledBlock]:
    """The scene's labels, block by block: left to right along a row of crops (a block for each
    step of the crops), then the next row of crops.

    Args:
        read: Reads a block of the scene (see :data:`ReadBlock`).
        height, width: The scene's size.
        model: Returns logits ``(N, K, h, w)`` for a batch ``(N, C, h, w)`` (eval mode).
        window, overlap: The crops' side and the pixels neighbouring crops share.
        tta: Average the four flips of each crop (eq. 13).
        batch_size: Crops per forward pass (×4 with TTA).
        device: Where the model runs.
        progress: Called with the number of crops done (predicted or skipped) after each batch.
        temperature: When given, each block carries its confidence, scaled by this temperature
            (the checkpoint's ``temperature``; 1.0: the blended probabilities as they are).
    """
    check_window(window, overlap)
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    padded_h, padded_w = max(height, window), max(width, window)
    columns = window_starts(padded_w, window, window - overlap)
    weights = blend_weights(window, overlap)
    groups = crop_rows(height, window, overlap)
    shared = _Shared(None, torch.zeros(0, padded_w))
    for index, tops in enumerate(groups):
        below = groups[index + 1][0] if index + 1 < len(groups) else padded_h
        row = _RowOfCrops(
            read, tops, below, height, width, padded_w, shared, model, window=window,
            weights=weights, tta=tta, device=device, temperature=temperature,
        )  # fmt: skip
        yield from row.label(columns, batch_size=batch_size, progress=progress)
        shared = row.shared


class _RowOfCrops:
    """A row of crops (or the last two), starting at scene row ``tops[0]``: its rows above
    ``below`` (where the next row of crops starts) are labelled; the sums of the rows below are
    handed on.

    The probabilities are held in a buffer of the columns that a crop still reaches, from
    ``left``: a column is final once every crop that covers it has been added.
    """

    def __init__(
        self, read: ReadBlock, tops: list[int], below: int, height: int, width: int,
        padded_w: int, above: _Shared, model, *, window: int, weights: torch.Tensor, tta: bool,
        device, temperature: float | None = None,
    ) -> None:  # fmt: skip
        self.read, self.tops, self.top, self.model = read, tops, tops[0], model
        self.temperature = temperature
        self.window, self.weights, self.tta, self.device = window, weights, tta, device
        self.height, self.width, self.padded_w = height, width, padded_w
        self.span = tops[-1] + window - self.top  # the buffer's rows
        self.above = above  # sums of rows top .. top + len(above.weight_sum) - 1
        self.final = min(below, height) - self.top  # rows labelled here
        self.handed_on = self.top + self.span - below  # rows the next row of crops shares
        self.shared = _Shared(None, torch.zeros(self.handed_on, padded_w))
        self.left = 0  # the buffer's first column
        self.total = None if above.total is None else above.total.new_zeros(
            above.total.shape[0], self.span, 0
        )  # fmt: skip
        self.weight_sum = torch.zeros(self.span, 0)
        self.has_data = np.zeros((self.span, 0), dtype=bool)

    def label(
        self,
        columns: list[int],
        *,
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> Iterator[LabelledBlock]:
        window = self.window
        pending: list[tuple[int, int, torch.Tensor]] = []  # (column, row, crop)
        skipped = 0

        def predict() -> None:
            nonlocal skipped
            if pending:
                self._add(pending)
            if progress is not None and (pending or skipped):
                progress(len(pending) + skipped)
            pending.clear()
            skipped = 0

        for index, x in enumerate(columns):
            self._extend(x + window)
            right = min(x + window, self.width)
            for y in self.tops:
                bottom = min(y + window, self.height)
                image, valid = self.read(y, bottom, x, right)
                self.has_data[
                    y - self.top : bottom - self.top, x - self.left : right - self.left
                ] = True if valid is None else valid
                if valid is None or bool(valid.any()):
                    pending.append((x, y, _pad(image, window)))
                else:  # nodata only: not predicted
                    skipped += 1
                # A batch is predicted when full, or early when nodata crops between its crops
                # would otherwise widen the buffer beyond a batch and a window.
                if len(pending) == batch_size or (
                    pending and x + window - pending[0][0] > (batch_size + 1) * window
                ):
                    predict()
            following = columns[index + 1] if index + 1 < len(columns) else self.padded_w
            yield from self._finish(pending[0][0] if pending else following)
        predict()
        yield from self._finish(self.padded_w)

    def _extend(self, right: int) -> None:
        """Grow the buffer to column ``right``: zeros, under the sums handed down from above."""
        grow = right - (self.left + self.weight_sum.shape[1])
        if grow <= 0:
            return
        start = self.left + self.weight_sum.shape[1]
        above = len(self.above.weight_sum)
        weight_sum = torch.zeros(self.span, grow)
        weight_sum[:above] = self.above.weight_sum[:, start:right]
        self.weight_sum = torch.cat([self.weight_sum, weight_sum], dim=1)
        self.has_data = np.concatenate(
            [self.has_data, np.zeros((self.span, grow), dtype=bool)], axis=1
        )
        if self.total is not None:
            total = self.total.new_zeros(self.total.shape[0], self.span, grow)
            if self.above.total is not None:
                total[:, :above] = self.above.total[:, :, start:right]
            self.total = torch.cat([self.total, total], dim=2)

    def _add(self, crops: list[tuple[int, int, torch.Tensor]]) -> None:
        stacked = torch.stack([image for _, _, image in crops])
        probs = predict_probs(self.model, stacked.to(self.device), tta=self.tta).float().cpu()
        if self.total is None:  # the scene's first prediction: now the class count is known
            self.total = torch.zeros(probs.shape[1], self.span, self.weight_sum.shape[1])
        window = self.window
        for (x, y, _), crop_probs in zip(crops, probs, strict=True):
            block = np.s_[
                y - self.top : y - self.top + window, x - self.left : x - self.left + window
            ]
            self.total[:, block[0], block[1]] += crop_probs * self.weights
            self.weight_sum[block] += self.weights

    def _finish(self, stop: int) -> Iterator[LabelledBlock]:
        """Columns ``left .. stop-1`` are final: label their rows, hand the rest on, drop them."""
        count = stop - self.left
        if count <= 0:
            return
        rows, left = self.final, self.left
        weight_sum = self.weight_sum[:, :count]
        inside = max(min(stop, self.width) - left, 0)  # columns of the scene, not its padding
        if inside and rows:
            covered = weight_sum[:rows, :inside]
            valid = (covered > 0).numpy() & self.has_data[:rows, :inside]
            confidence = None
            if self.total is None:  # no crop predicted yet
                labels = np.zeros((rows, inside), dtype=LABEL_DTYPE)
                if self.temperature is not None:
                    confidence = np.zeros((rows, inside), dtype=np.float32)
            else:
                probs = self.total[:, :rows, :inside] / covered.clamp_min(1e-12)
                labels = probs.argmax(0).numpy().astype(LABEL_DTYPE)
                if self.temperature is not None:
                    confidence = top_probability(probs, self.temperature)
            yield LabelledBlock(self.top, left, labels, valid, confidence)
        if self.handed_on:
            below = self.span - self.handed_on
            self.shared.weight_sum[:, left:stop] = weight_sum[below:]
            if self.total is not None:
                if self.shared.total is None:
                    self.shared.total = torch.zeros(
                        self.total.shape[0], self.handed_on, self.padded_w
                    )
                self.shared.total[:, :, left:stop] = self.total[:, below:, :count]
        self.weight_sum = self.weight_sum[:, count:]
        self.has_data = self.has_data[:, count:]
        if self.total is not None:
            self.total = self.total[:, :, count:]
        self.left = stop


def top_probability(probs: torch.Tensor, temperature: float) -> np.ndarray:
    """The top class's probability ``(h, w)`` after temperature scaling of probabilities
    ``(K, h, w)``: ``max softmax(log p / T)`` (for one crop's ``softmax(logits)``, exactly
    ``max softmax(logits / T)``)."""
    scaled = (probs.clamp_min(1e-12).log() / temperature).softmax(dim=0)
    return scaled.amax(dim=0).numpy().astype(np.float32)


def _pad(image: torch.Tensor, window: int) -> torch.Tensor:
    """A crop padded (edge pixels repeated) to the window, as the whole-image inference pads a
    scene smaller than the window."""
    pad_h, pad_w = window - image.shape[1], window - image.shape[2]
    if pad_h or pad_w:
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    return image
