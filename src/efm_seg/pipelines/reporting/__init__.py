"""Reporting: the paper's tables and figures and one self-contained HTML report."""

from efm_seg.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
