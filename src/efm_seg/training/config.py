"""Training configuration: the paper's recipe as one validated object per stage.

A stage's settings are the shared ``training`` block with the stage's own overrides merged in
(``baseline``, ``efm`` and ``finetune`` in ``conf/base/parameters_<stage>.yml``), so the three
stages differ only in what they override.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
EFMSource = Literal["per_sample", "online", "validation_prior"]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, recursively for nested mappings."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class ConfigError(ValueError):
    """A training parameter is missing, unknown or out of range; the message names it."""


def _check_keys(params: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")


def _number(value: Any, name: str, *, low: float, high: float | None = None, integer: bool = False):
    """``value`` if it is a number (an integer where asked) in range, else a ConfigError."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{name}: {value!r} must be {'an integer' if integer else 'a number'}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{name}: {value!r} must be {bound}")
    return value


@dataclass(frozen=True)
class EFMSchedule:
    """When the EFM is (re)computed: at ``start_epoch``, then every ``every`` epochs (1-based).

    The paper (§2.3 step 3, §3.3) recomputes "every two epochs, starting from the fifth"; before
    ``start_epoch`` the loss runs without an EFM. Epoch numbers count from 1.
    """

    enabled: bool = False
    source: EFMSource = "per_sample"
    start_epoch: int = 5
    every: int = 2

    def is_refresh_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0

    def active(self, epoch: int) -> bool:
        """Whether the loss uses an EFM in ``epoch``."""
        return self.enabled and epoch >= self.start_epoch


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training stage needs; built by :meth:`from_params`."""

    stage: str
    arch: str
    encoder: str
    encoder_weights: str | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    scheduler: Literal["cosine", "none"]
    grad_clip: float | None
    precision: Precision
    ema_enabled: bool
    ema_decay: float
    device: str
    seed: int
    num_workers: int
    augment: dict[str, Any]
    efm: EFMSchedule
    snapshot_count: int
    init_from: Literal["previous"] | None
    loss: dict[str, Any] = field(default_factory=dict)
    efm_map: dict[str, Any] = field(default_factory=dict)

    KNOWN = frozenset(
        {
            "model", "epochs", "batch_size", "optimizer", "scheduler", "grad_clip", "precision",
            "ema", "device", "seed", "num_workers", "augment", "efm", "snapshots", "init_from",
        }
    )  # fmt: skip

    @classmethod
    def from_params(
        cls,
        stage: str,
        training: Mapping[str, Any],
        overrides: Mapping[str, Any] | None,
        efm_method: Mapping[str, Any],
    ) -> TrainConfig:
        """Merge a stage's overrides into the shared ``training`` block and validate.

        Args:
            stage: The stage name (``baseline``, ``efm``, ``finetune``), used in messages.
            training: ``params:training``, the shared recipe.
            overrides: ``params:<stage>.training``, what this stage changes.
            efm_method: ``params:efm_method`` (``map`` and ``loss`` of ``efm_seg.efm``).
        """
        params = deep_merge(training, overrides or {})
        where = f"{stage}.training"
        _check_keys(params, set(cls.KNOWN), where)

        model = params.get("model") or {}
        _check_keys(model, {"arch", "encoder", "encoder_weights"}, f"{where}.model")
        weights = model.get("encoder_weights")
        if isinstance(weights, str) and weights.lower() in ("none", "null", "random", ""):
            weights = None

        optimizer = params.get("optimizer") or {}
        _check_keys(optimizer, {"lr", "weight_decay"}, f"{where}.optimizer")
        scheduler = params.get("scheduler", "cosine") or "none"
        if scheduler not in ("cosine", "none"):
            raise ConfigError(f"{where}.scheduler: {scheduler!r} must be 'cosine' or 'none'")
        grad_clip = params.get("grad_clip")
        if grad_clip is not None:
            grad_clip = _number(grad_clip, f"{where}.grad_clip", low=0.0) or None
        precision = params.get("precision", "auto")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"{where}.precision: {precision!r} must be auto, fp32, bf16 or fp16")

        ema = params.get("ema") or {}
        _check_keys(ema, {"enabled", "decay"}, f"{where}.ema")
        efm = params.get("efm") or {}
        _check_keys(efm, {"enabled", "source", "start_epoch", "every"}, f"{where}.efm")
        source = efm.get("source", "per_sample")
        if source not in ("per_sample", "online", "validation_prior"):
            raise ConfigError(
                f"{where}.efm.source: {source!r} must be per_sample, online or validation_prior"
            )
        snapshots = params.get("snapshots") or {}
        _check_keys(snapshots, {"count"}, f"{where}.snapshots")
        init_from = params.get("init_from")
        if init_from not in (None, "previous"):
            raise ConfigError(
                f"{where}.init_from: {init_from!r} must be null (a fresh, seeded initialisation) "
                "or 'previous' (the previous stage's best checkpoint)"
            )
        device = str(params.get("device", "auto"))
        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError as exc:
                raise ConfigError(f"{where}.device: {device!r} is not a device ({exc})") from None

        map_params = dict((efm_method or {}).get("map") or {})
        loss_params = dict((efm_method or {}).get("loss") or {})
        _check_keys(map_params, {"alpha", "sigma"}, "efm_method.map")

        return cls(
            stage=stage,
            arch=str(model.get("arch", "FPN")),
            encoder=str(model.get("encoder", "resnet34")),
            encoder_weights=weights,
            epochs=_number(params.get("epochs"), f"{where}.epochs", low=1, integer=True),
            batch_size=_number(
                params.get("batch_size"), f"{where}.batch_size", low=1, integer=True
            ),
            lr=_number(optimizer.get("lr"), f"{where}.optimizer.lr", low=0.0),
            weight_decay=_number(
                optimizer.get("weight_decay", 0.0), f"{where}.optimizer.weight_decay", low=0.0
            ),
            scheduler=scheduler,
            grad_clip=grad_clip,
            precision=precision,
            ema_enabled=bool(ema.get("enabled", False)),
            ema_decay=_number(ema.get("decay", 0.999), f"{where}.ema.decay", low=0.0, high=1.0),
            device=device,
            seed=_number(params.get("seed", 0), f"{where}.seed", low=0, integer=True),
            num_workers=_number(
                params.get("num_workers", 0), f"{where}.num_workers", low=0, integer=True
            ),
            augment=dict(params.get("augment") or {}),
            efm=EFMSchedule(
                enabled=bool(efm.get("enabled", False)),
                source=source,
                start_epoch=_number(
                    efm.get("start_epoch", 5), f"{where}.efm.start_epoch", low=1, integer=True
                ),
                every=_number(efm.get("every", 2), f"{where}.efm.every", low=1, integer=True),
            ),
            snapshot_count=_number(
                snapshots.get("count", 4), f"{where}.snapshots.count", low=0, integer=True
            ),
            init_from=init_from,
            loss=loss_params,
            efm_map=map_params,
        )

    def resolve_device(self) -> torch.device:
        """``auto``: CUDA when available, else the CPU."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolve_precision(self, device: torch.device) -> tuple[torch.dtype | None, bool]:
        """The autocast dtype (``None`` = fp32) and whether a gradient scaler is needed.

        ``auto`` is fp32 on the CPU (bf16 autocast is slower than fp32 on most CPUs) and, on CUDA,
        bf16 where the GPU supports it, else fp16 with a gradient scaler.
        """
        precision = self.precision
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
                f"{self.stage}.training.precision: fp16 needs a CUDA device; use bf16 or fp32 "
                f"on {device.type}"
            )
        return torch.float16, True
