"""Training: one modular pipeline, reused under the namespaces baseline, efm, finetune and
baseline_equal."""

from efm_seg.pipelines.training.pipeline import create_pipeline, create_stage_pipeline

__all__ = ["create_pipeline", "create_stage_pipeline"]
