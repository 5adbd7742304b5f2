"""Test-time augmentation of the paper's eq. 13: softmax averaged over four flips.

``P_TTA = ¼ Σ_i Flip_i⁻¹(Softmax(f(Flip_i(I))))`` with the flips of :data:`FLIPS` — identity,
horizontal, vertical, and both (the paper's "diagonal" flip: a 180° rotation). Each flip is its
own inverse, so mapping a prediction back is the same flip again, and it is exact (a permutation
of pixels, no interpolation). The four variants go through the model as **one** batch of ``4B``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""Dimensions flipped by each TTA variant, in batch order: identity, horizontal (width, ``-1``),
vertical (height, ``-2``), both (height and width: a 180° rotation). All are involutions."""


def _flip(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return tensor.flip(dims) if dims else tensor


def tta_variants(images: torch.Tensor) -> torch.Tensor:
    """The ``4B`` batch ``[images, hflip, vflip, both]`` of a ``(B, C, H, W)`` batch."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    return torch.cat([_flip(images, dims) for dims in FLIPS], dim=0)


def merge_tta(outputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Undo each variant's flip on a ``(4B, C, H, W)`` output of :func:`tta_variants` and average.

    Returns ``(B, C, H, W)``, in ``outputs``' dtype.
    """
    if outputs.dim() != 4 or outputs.shape[0] != len(FLIPS) * batch_size:
        raise ValueError(
            f"outputs must be ({len(FLIPS)}·B, C, H, W) with B={batch_size}, "
            f"got shape {tuple(outputs.shape)}"
        )
    chunks = outputs.split(batch_size, dim=0)
    total = _flip(chunks[0], FLIPS[0]).clone()
    for chunk, dims in zip(chunks[1:], FLIPS[1:], strict=True):
        total += _flip(chunk, dims)
    return total / len(FLIPS)


def _softmax_fp32(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over classes in float32 (of ``logits / temperature``), whatever autocast is
    doing around the call."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        return (logits if temperature == 1.0 else logits / temperature).softmax(dim=1)


def predict_probs(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    tta: bool,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Class probabilities ``(B, C, H, W)`` (float32) of a batch ``(B, C_in, H, W)``.

    Without TTA: ``softmax(model(images) / temperature)``. With TTA (eq. 13): one forward pass
    on the ``4B`` batch of :func:`tta_variants`, softmax, each variant flipped back, mean of the
    four. ``temperature`` (post-hoc temperature scaling, :mod:`efm_seg.evaluation.calibration`)
    divides the logits; 1.0 leaves them as they are.

    The model must return logits ``(N, C, H', W')`` for a batch of ``N`` (a flip of the input
    should flip the output grid, as for any fully convolutional network). No gradient context is
    set here: call it under ``torch.no_grad()`` / ``torch.inference_mode()`` and, if wanted,
    ``torch.autocast`` — the softmax and the average are always computed in float32.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not tta:
        return _softmax_fp32(model(images), temperature)
    logits = model(tta_variants(images))
    return merge_tta(_softmax_fp32(logits, temperature), images.shape[0])
