"""Stage 1, baseline training (paper §3.3): the training pipeline without EFM."""

from efm_seg.pipelines.training import create_stage_pipeline


def create_pipeline(**kwargs):
    return create_stage_pipeline("baseline")
