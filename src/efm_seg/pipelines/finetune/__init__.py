"""Stage 3, EFM fine-tuning (paper §3.3): continues from the EFM stage's best checkpoint."""

from efm_seg.pipelines.training import create_stage_pipeline


def create_pipeline(**kwargs):
    return create_stage_pipeline("finetune", init_from="efm.best_checkpoint")
