"""Evaluation: each stage's best checkpoint on the test split, with and without TTA."""

from efm_seg.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
