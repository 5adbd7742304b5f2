"""Checkpoints: the model's spec and weights as plain values, loadable with weights_only=True."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from efm_seg.models.build import _meta_model, build_model
from efm_seg.models.spec import ModelSpec

CHECKPOINT_FORMAT = "efm-seg-checkpoint/1"
"""The ``format`` key of the checkpoints written by :func:`make_checkpoint`."""


_RESERVED_KEYS = frozenset({"format", "model_spec", "state_dict"})


# -- checkpoints ----------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside EMA/SWA averages, torch.compile and (Distributed)DataParallel."""
    while True:
        if isinstance(model, torch.optim.swa_utils.AveragedModel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _snapshot(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy that later training steps cannot change."""
    tensor = tensor.detach()
    return tensor.clone() if tensor.device.type == "cpu" else tensor.cpu()


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        out = value
    elif isinstance(value, torch.Tensor):
        out = _snapshot(value)
    elif isinstance(value, np.generic | np.ndarray):
        if value.dtype.kind not in "biufcU":
            raise TypeError(f"checkpoint metadata {where} is NumPy data of type {value.dtype}")
        out = value.tolist()  # a NumPy scalar becomes a Python number
    elif isinstance(value, os.PathLike):
        out = os.fspath(value)
    elif isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"checkpoint metadata {where} has a {type(key).__name__} key")
            out[key] = _plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        out = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    else:
        raise TypeError(
            f"checkpoint metadata {where} is a {type(value).__name__}; checkpoints hold only "
            "tensors and plain values (str, int, float, bool, None, lists and dicts of them) so "
            "that they load with torch.load(weights_only=True)"
        )
    return out


def make_checkpoint(model: nn.Module, spec: ModelSpec, **metadata: Any) -> dict[str, Any]:
    """A checkpoint of ``model``: its spec, a CPU copy of its weights, and ``metadata``.

    The result holds only tensors and plain Python values, so ``torch.save`` writes it and
    ``torch.load(..., weights_only=True)`` reads it back. The weights are copies: training the
    model further does not change a checkpoint already made. For an EMA/SWA
    :class:`~torch.optim.swa_utils.AveragedModel` the averaged ``.module`` is saved.

    Args:
        model: The model (plain, averaged, compiled or data-parallel).
        spec: What the model was built from (checked against the weights).
        **metadata: Plain values to store with it, e.g. ``classes``, ``epoch``, ``metrics``,
            ``stage``, ``ema``. NumPy scalars become Python numbers, arrays nested lists,
            tuples lists, paths strings.

    Raises:
        ValueError: The weights do not fit ``spec``, or a metadata key is reserved.
        TypeError: A metadata value is not a plain value.
    """
    reserved = sorted(_RESERVED_KEYS & set(metadata))
    if reserved:
        raise ValueError(f"checkpoint metadata cannot use the reserved key(s) {reserved}")
    state = _unwrap(model).state_dict()
    expected = _meta_model(spec).state_dict()
    mismatched = sorted(set(state) ^ set(expected)) or [
        k for k in state if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        raise ValueError(
            f"the model's weights do not match {spec} (e.g. {', '.join(mismatched[:4])}); "
            "pass the spec the model was built from"
        )
    return {
        "format": CHECKPOINT_FORMAT,
        "model_spec": spec.to_dict(),
        "state_dict": {key: _snapshot(value) for key, value in state.items()},
        **{key: _plain(value, key) for key, value in metadata.items()},
    }


def model_from_checkpoint(checkpoint: Mapping[str, Any]) -> nn.Module:
    """The model saved in a :func:`make_checkpoint` checkpoint, on the CPU, in eval mode."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a checkpoint is a mapping, got {type(checkpoint).__name__}")
    found = checkpoint.get("format")
    if found != CHECKPOINT_FORMAT:
        what = (
            f"its format is {found!r}"
            if "format" in checkpoint
            else f"it has no 'format' key (keys: {', '.join(map(str, list(checkpoint)[:8]))})"
        )
        raise ValueError(
            f"not an efm-seg checkpoint ({CHECKPOINT_FORMAT!r}): {what}. Checkpoints come from "
            "efm_seg.models.make_checkpoint"
        )
    for key in ("model_spec", "state_dict"):
        if not isinstance(checkpoint.get(key), Mapping):
            raise ValueError(f"the checkpoint's {key!r} is missing or not a mapping")
    spec = ModelSpec.from_dict(checkpoint["model_spec"])
    model = build_model(spec, None)
    try:
        model.load_state_dict(dict(checkpoint["state_dict"]))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(
            f"the checkpoint's weights do not fit its model_spec {spec}: "
            f"{' '.join(line.strip() for line in first[:3])}"
        ) from exc
    return model.eval()


def check_stage_checkpoint(
    checkpoint: Mapping[str, Any], stage: str, classes: Sequence[str], pipeline: str
) -> None:
    """Refuse a checkpoint that ``kedro run --pipelines <pipeline>`` should not use: another
    stage's than ``<pipeline>.stage`` (its catalog entry follows the stage given with
    ``--params``), or one trained on other classes than ``dataset.classes``."""
    trained = (checkpoint.get("lineage") or {}).get("stage", checkpoint.get("stage"))
    if trained != stage:
        raise ValueError(
            f"{pipeline}.checkpoint is the {trained} stage's checkpoint but {pipeline}.stage is "
            f"{stage}: choose the stage on the command line (kedro run --pipelines {pipeline} "
            f"--params {pipeline}.stage={stage}), which the catalog entry follows"
        )
    if list(checkpoint.get("classes", [])) != list(classes):
        raise ValueError(
            f"the {trained} checkpoint was trained on classes {checkpoint.get('classes')}, but "
            f"dataset.classes is {list(classes)}: {pipeline} with the environment it was trained "
            "in (--env)"
        )
