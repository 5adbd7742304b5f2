"""Preprocessing: resize or tile every sample and encode its labels to 0..C-1."""

from efm_seg.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
