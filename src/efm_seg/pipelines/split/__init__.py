"""Split: a grouped, class-stratified, seeded train/val/test split."""

from efm_seg.pipelines.split.pipeline import create_pipeline

__all__ = ["create_pipeline"]
