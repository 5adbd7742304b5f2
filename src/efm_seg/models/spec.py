"""The model spec: which smp architecture, encoder, classes and input channels to build."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
from torch import nn


def architectures() -> dict[str, type[nn.Module]]:
    """smp's architectures by their class names (``FPN``, ``PSPNet``, ``Unet``, ...)."""
    return {cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}


# -- the spec -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What to build: an smp architecture, its encoder, the number of classes, input channels.

    Validated on creation; ``arch`` is matched case-insensitively and stored under smp's class
    name (``"fpn"`` becomes ``"FPN"``), so equal models have equal specs.
    """

    arch: str = "FPN"
    encoder: str = "resnet34"
    num_classes: int = 7
    in_channels: int = 3

    def __post_init__(self) -> None:
        known = architectures()
        if not isinstance(self.arch, str):
            raise ValueError(f"model.arch must be a string, got {self.arch!r}")
        canonical = {name.lower(): name for name in known}.get(self.arch.lower())
        if canonical is None:
            raise ValueError(
                f"model.arch={self.arch!r} is not a segmentation-models-pytorch architecture; "
                f"valid names: {', '.join(known)}"
            )
        object.__setattr__(self, "arch", canonical)

        names = smp.encoders.get_encoder_names()
        if not isinstance(self.encoder, str) or self.encoder not in names:
            close = difflib.get_close_matches(str(self.encoder), names, n=5, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else f"e.g. {', '.join(names[:6])}"
            raise ValueError(
                f"model.encoder={self.encoder!r} is not an encoder of segmentation-models-pytorch "
                f"({len(names)} known, see smp.encoders.get_encoder_names()); {hint}"
            )
        for name in ("num_classes", "in_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"model.{name} must be an integer ≥ 1, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def name(self) -> str:
        """``arch-encoder``, e.g. ``FPN-resnet34``."""
        return f"{self.arch}-{self.encoder}"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values (what checkpoints store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> ModelSpec:
        """The spec from :meth:`to_dict`'s output; unknown keys are errors unless ignored."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a model spec must be a mapping, got {type(data).__name__}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed - set(ignore))
        if unknown:
            raise ValueError(
                f"unknown model parameter(s) {', '.join(f'model.{k}' for k in unknown)}; "
                f"valid: {', '.join(sorted(allowed))}"
            )
        return cls(**{k: v for k, v in data.items() if k in allowed})
