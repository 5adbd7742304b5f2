"""The device and number format a stage trains in (``training.device`` and ``precision``)."""

from __future__ import annotations

import torch

from efm_seg.basics.devices import resolve_device
from efm_seg.training.config import ConfigError, TrainConfig

__all__ = ["resolve_device", "resolve_precision"]


def resolve_precision(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype (``None`` = fp32) and whether a gradient scaler is needed.

    ``auto`` is fp32 on the CPU (bf16 autocast is slower than fp32 on most CPUs) and, on CUDA,
    bf16 where the GPU supports it, else fp16 with a gradient scaler.

    Raises:
        ConfigError: fp16 asked for on a device other than CUDA.
    """
    precision = config.precision
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
            f"{config.stage}.training.precision: fp16 needs a CUDA device; use bf16 or fp32 "
            f"on {device.type}"
        )
    return torch.float16, True
