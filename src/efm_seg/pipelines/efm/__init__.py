"""Stage 2, EFM training (paper §3.3): the training pipeline with the EFM-weighted loss."""

from efm_seg.pipelines.training import create_stage_pipeline


def create_pipeline(**kwargs):
    return create_stage_pipeline("efm", init_from="baseline.best_checkpoint")
