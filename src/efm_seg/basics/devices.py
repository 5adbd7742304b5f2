"""Torch devices named in the parameters: checked when a session starts, resolved when used."""

from __future__ import annotations

import torch


def check_device(device: str) -> str:
    """A torch device name, and a GPU that exists when one is asked for."""
    if device == "auto":
        return device
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"{device!r} is not a device ({exc}); use auto, cpu or cuda") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{device!r} asks for a CUDA GPU but torch sees none (torch {torch.__version__}); "
                "use auto (the GPU when there is one) or cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{device!r}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU when torch sees one, else the CPU; any other name as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def trains_on_cuda(device: str) -> bool:
    """Whether ``device`` (``auto``, ``cpu``, ``cuda:N``, ...) means a CUDA GPU here."""
    return resolve_device(device).type == "cuda"
