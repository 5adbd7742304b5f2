"""Argument checks shared by the EFM functions (shapes and dtypes only: never a device sync)."""

from __future__ import annotations

import math

import torch


def check_number(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` if out of range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def check_odd_kernel(name: str, value: object) -> int:
    """Return ``value`` if it is an odd positive int, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer, got {value!r}")
    return value


def check_num_classes(num_classes: object) -> int:
    """Return ``num_classes`` if it is an int >= 1, else raise ``ValueError``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def check_ignore_index(ignore_index: object) -> int | None:
    """Return ``ignore_index`` if it is ``None`` or an int, else raise ``ValueError``."""
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    return ignore_index


def check_labels(target: torch.Tensor, name: str = "target") -> torch.Tensor:
    """Check a ``(B, H, W)`` integer label map and return it as ``int64``."""
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W), got {tuple(target.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {target.dtype}")
    return target.long()


def check_probs(probs: torch.Tensor, name: str = "probs") -> None:
    """Check a ``(B, C, H, W)`` floating-point class-probability tensor."""
    if not isinstance(probs, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(probs).__name__}")
    if probs.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {probs.dtype}")


def check_probs_target(
    probs: torch.Tensor, target: torch.Tensor, probs_name: str = "probs"
) -> torch.Tensor:
    """Check ``probs`` (B, C, H, W) against ``target`` (B, H, W); return ``target`` as int64."""
    check_probs(probs, probs_name)
    target = check_labels(target)
    if target.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(
            f"shape mismatch: {probs_name} is {tuple(probs.shape)} (B, C, H, W) but target is "
            f"{tuple(target.shape)}; target must be (B, H, W) = "
            f"{(probs.shape[0], *probs.shape[2:])}"
        )
    if probs.device != target.device:
        raise ValueError(f"{probs_name} is on {probs.device} but target is on {target.device}")
    return target


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype maps are computed in: float64 stays float64, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
