"""Predict: label maps of new scenes of any size with a trained stage's checkpoint."""

from efm_seg.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
