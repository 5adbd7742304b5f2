"""Sliding-window inference: class probabilities of an image of any size (plain PyTorch).

The image is cut into ``window × window`` crops that overlap by ``overlap`` pixels (stride
``window − overlap``; the last crop of a row or column is moved back so that it ends at the
image's edge). Each crop's softmax is weighted by :func:`blend_weights`, which is 1 in the
middle and falls linearly towards the crop's edges over the overlap, where a network sees the
least context; the probabilities are the weighted mean over the crops covering each pixel. With
``overlap=0`` every weight is 1, and an image whose sides are multiples of the window is
predicted exactly as its tiles are, one by one. An image smaller than the window is padded
(edge pixels repeated) to the window and the result cropped back.

The crops go through the model in batches, optionally with the four-flip TTA of eq. 13
(:func:`efm_seg.evaluation.tta.predict_probs`). The probabilities of the whole image are
accumulated in float32 on the CPU: ``4·K·H·W`` bytes (K classes), e.g. 2.8 GB for a
10,000² scene with 7 classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from efm_seg.basics.windows import check_window
from efm_seg.evaluation.tta import predict_probs


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Where the crops along one side of ``length`` pixels start: every ``stride`` from 0, the
    last one moved back to end at the edge."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def blend_weights(window: int, overlap: int) -> torch.Tensor:
    """``(window, window)`` weights: 1 inside, falling linearly to ``1/(overlap+1)`` at the
    edges over ``overlap`` pixels (all 1 without overlap). Always positive."""
    check_window(window, overlap)
    ramp = torch.ones(window)
    if overlap > 0:
        edge = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        ramp[:overlap] = edge
        ramp[window - overlap :] = edge.flip(0)
    return ramp[:, None] * ramp[None, :]


@torch.inference_mode()
def sliding_window_probs(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    window: int,
    overlap: int,
    tta: bool = False,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Class probabilities ``(K, H, W)`` (float32, CPU) of one normalised image ``(C, H, W)``.

    Args:
        model: Returns logits ``(N, K, h, w)`` for a batch ``(N, C, h, w)`` (eval mode).
        image: The image, normalised as the model was trained.
        window: The side of the square crops (a size the model accepts).
        overlap: Pixels shared by neighbouring crops, ``0 ≤ overlap ≤ window / 2``.
        tta: Average the four flips of each crop (eq. 13).
        batch_size: Crops per forward pass (×4 with TTA).
        device: Where the model runs.
    """
    check_window(window, overlap)
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    _, height, width = image.shape
    pad_h, pad_w = max(window - height, 0), max(window - width, 0)
    if pad_h or pad_w:
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    padded_h, padded_w = image.shape[1:]
    stride = window - overlap
    positions = [
        (y, x)
        for y in window_starts(padded_h, window, stride)
        for x in window_starts(padded_w, window, stride)
    ]
    weights = blend_weights(window, overlap)
    total: torch.Tensor | None = None
    weight_sum = torch.zeros(padded_h, padded_w)
    for first in range(0, len(positions), batch_size):
        batch = positions[first : first + batch_size]
        crops = torch.stack([image[:, y : y + window, x : x + window] for y, x in batch])
        probs = predict_probs(model, crops.to(device), tta=tta).float().cpu()
        if total is None:
            total = torch.zeros(probs.shape[1], padded_h, padded_w)
        for (y, x), crop_probs in zip(batch, probs, strict=True):
            total[:, y : y + window, x : x + window] += crop_probs * weights
            weight_sum[y : y + window, x : x + window] += weights
    assert total is not None  # at least one crop
    return (total / weight_sum)[:, :height, :width]
