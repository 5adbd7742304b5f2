"""Export node: a trained stage's model as ONNX (:mod:`efm_seg.inference.onnx_export`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from efm_seg.basics.mappings import as_mapping
from efm_seg.data.labels import LabelScheme
from efm_seg.parameters import ExportParams, describe

logger = logging.getLogger(__name__)


def export_model(
    checkpoint: dict[str, Any], dataset: Mapping[str, Any], export: ExportParams
) -> bytes:
    """The checkpoint of ``export.stage`` as a serialised ONNX model with QGIS Deepness metadata.

    Raises:
        ValueError: The checkpoint is another stage's, or was trained on other classes than the
            environment's ``dataset.classes``.
    """
    try:
        settings = ExportParams.model_validate(as_mapping(export))
    except ValidationError as exc:
        raise ValueError(describe(exc, "export")) from None
    # torch and onnx: imported when the node runs, never when the CLI registers the pipelines.
    from efm_seg.inference.onnx_export import export_onnx
    from efm_seg.models.checkpoints import check_stage_checkpoint

    classes = LabelScheme.from_params(as_mapping(dataset)).classes
    check_stage_checkpoint(checkpoint, settings.stage, classes, "export")
    stage = settings.stage

    # The training samples' own pixel size (georeferenced sources) unless export.resolution.
    resolution = settings.resolution
    if resolution is None:
        resolution = checkpoint.get("resolution_cm")
    model = export_onnx(
        checkpoint, settings.tiles_size, settings.tiles_overlap, resolution_cm=resolution
    )
    logger.info(
        "Exported the %s checkpoint of run %s as ONNX (%.1f MB): tiles %d, overlap %d",
        stage, (checkpoint.get("lineage") or {}).get("run_id", "?"), len(model) / 1e6,
        settings.tiles_size, settings.tiles_overlap,
    )  # fmt: skip
    return model
