"""A trained stage's model as ONNX, for tools outside the project (GIS plugins, onnxruntime).

The exported graph takes a normalised image batch ``(N, C, H, W)`` float32 (any ``N``, ``H``
and ``W`` the architecture takes, e.g. multiples of 32) and returns class probabilities
``(N, K, H, W)`` (the softmax is part of the graph, of the logits divided by the checkpoint's
``temperature``: :mod:`efm_seg.evaluation.calibration`). Its metadata follow the QGIS Deepness
plugin's model metadata, so that Deepness reads the classes and the tiling itself: values are
JSON, keys ``model_type`` (``Segmentor``), ``class_names`` (output channel → class),
``resolution`` (cm per pixel, when known), ``tiles_size``, ``tiles_overlap`` (per cent of the
tile), ``standardization_mean`` / ``standardization_std`` (per band, on pixel values / 255).
``efm_seg`` adds the bands the model reads and its checkpoint's lineage.

Needs the ``export`` extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from efm_seg.loading import checkpoint_normalization
from efm_seg.models import ModelSpec, check_input_size, model_from_checkpoint

# The opset onnxruntime's current releases run (and torch's exporter writes by default).
OPSET = 18


class _Probabilities(nn.Module):
    """The model's softmax, of its logits divided by the checkpoint's temperature (post-hoc
    temperature scaling: the same labels, calibrated confidences)."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.model(image) / self.temperature).softmax(dim=1)


def onnx_modules():
    """onnx, or an ImportError saying which extra installs it."""
    try:
        import onnx
        import onnxscript  # noqa: F401  torch's exporter needs it
    except ImportError:
        raise ImportError(
            "ONNX export needs the export extra: pip install 'efm-seg[export]'"
        ) from None
    return onnx


def deepness_metadata(
    checkpoint: Mapping[str, Any],
    tiles_size: int,
    tiles_overlap: int,
    resolution_cm: float | None = None,
) -> dict[str, str]:
    """The model's metadata (see the module docstring), each value JSON."""
    normalization = checkpoint_normalization(checkpoint)
    metadata: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(i): name for i, name in enumerate(checkpoint["classes"])},
        "tiles_size": int(tiles_size),
        "tiles_overlap": round(100 * tiles_overlap / tiles_size),
        "standardization_mean": normalization["mean"],
        "standardization_std": normalization["std"],
        "efm_seg_bands": checkpoint.get("bands"),
        "efm_seg_stage": (checkpoint.get("lineage") or {}).get("stage", checkpoint.get("stage")),
        "efm_seg_run_id": (checkpoint.get("lineage") or {}).get("run_id"),
        "efm_seg_temperature": float(checkpoint.get("temperature", 1.0)),
    }
    if resolution_cm is not None:
        metadata["resolution"] = float(resolution_cm)
    return {key: json.dumps(value) for key, value in metadata.items()}


def export_onnx(
    checkpoint: Mapping[str, Any],
    tiles_size: int,
    tiles_overlap: int,
    resolution_cm: float | None = None,
) -> bytes:
    """The checkpoint's model as a serialised ONNX model with dynamic batch, height and width,
    and the metadata of :func:`deepness_metadata`.

    Raises:
        ValueError: ``tiles_size`` is a size the architecture cannot take.
        ImportError: The ``export`` extra is not installed.
    """
    onnx = onnx_modules()
    spec = ModelSpec.from_dict(checkpoint["model_spec"])
    check_input_size(spec, tiles_size, tiles_size, setting="export.tiles_size")
    temperature = float(checkpoint.get("temperature", 1.0))
    model = _Probabilities(model_from_checkpoint(checkpoint), temperature).eval()
    example = torch.zeros(1, spec.in_channels, tiles_size, tiles_size)
    dims = {
        0: torch.export.Dim("batch"),
        2: torch.export.Dim("height"),
        3: torch.export.Dim("width"),
    }
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=OPSET,
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_shapes={"image": dims},
        verbose=False,
    )
    proto = program.model_proto
    for key, value in deepness_metadata(
        checkpoint, tiles_size, tiles_overlap, resolution_cm
    ).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    buffer = io.BytesIO()
    onnx.save_model(proto, buffer)
    return buffer.getvalue()


def read_metadata(model: bytes) -> dict[str, Any]:
    """The metadata of a serialised ONNX model, each value decoded from JSON."""
    onnx = onnx_modules()
    proto = onnx.load_model_from_string(model)
    return {entry.key: json.loads(entry.value) for entry in proto.metadata_props}


def standardise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per band of a ``(N, C, H, W)`` uint8 batch: what Deepness and
    the project feed the model."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (image.float() / 255 - mean_t) / std_t
