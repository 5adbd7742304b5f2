"""Ingestion: find image/mask pairs in a raw folder, validate them, write the manifest."""

from efm_seg.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
