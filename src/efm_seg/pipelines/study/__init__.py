"""The study: a fair multi-seed comparison of EFM variants against equal-budget baselines."""

from efm_seg.pipelines.study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
