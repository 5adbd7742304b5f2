"""The equal-budget baseline: the baseline's recipe in one run of as many epochs as the three
stages together (the reference the report compares the stages with)."""

from efm_seg.basics.names import EQUAL_BUDGET
from efm_seg.pipelines.training import create_stage_pipeline


def create_pipeline(**kwargs):
    return create_stage_pipeline(EQUAL_BUDGET)
