"""Test-set evaluation: confusion-matrix scores, Boundary IoU, calibration error and TTA."""

from efm_seg.evaluation.boundary import (
    DEFAULT_DILATION_RATIO,
    BoundaryConfig,
    BoundaryIoU,
    band_width,
    boundary_band,
    label_boundary,
)
from efm_seg.evaluation.metrics import (
    DEFAULT_CALIBRATION_BINS,
    OVERALL_KEYS,
    PER_CLASS_KEYS,
    BinnedCalibrationError,
    EvaluationResult,
    SegmentationEvaluator,
    scores_from_confusion,
)
from efm_seg.evaluation.tta import FLIPS, merge_tta, predict_probs, tta_variants

__all__ = [
    "DEFAULT_CALIBRATION_BINS",
    "DEFAULT_DILATION_RATIO",
    "FLIPS",
    "OVERALL_KEYS",
    "PER_CLASS_KEYS",
    "BinnedCalibrationError",
    "BoundaryConfig",
    "BoundaryIoU",
    "EvaluationResult",
    "SegmentationEvaluator",
    "band_width",
    "boundary_band",
    "label_boundary",
    "merge_tta",
    "predict_probs",
    "scores_from_confusion",
    "tta_variants",
]
