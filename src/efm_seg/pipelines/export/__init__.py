"""Export: a trained stage's model as ONNX, for GIS tools (QGIS Deepness) and onnxruntime."""

from efm_seg.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]
