"""Report of a run: stage tables, training curves, EFM evolution and qualitative figures."""

from efm_seg.reporting.figures import (
    STAGE_COLOURS,
    colourise,
    confusion_figure,
    difference_map,
    evolution_grid,
    message_figure,
    per_class_bars,
    qualitative,
    training_curves,
)
from efm_seg.reporting.report import (
    METRIC_LABELS,
    STAGE_LABELS,
    STAGE_ORDER,
    figure_png,
    html_report,
    per_class_table,
    stage_label,
    stage_table,
    to_markdown,
)

__all__ = [
    "METRIC_LABELS",
    "STAGE_COLOURS",
    "STAGE_LABELS",
    "STAGE_ORDER",
    "colourise",
    "confusion_figure",
    "difference_map",
    "evolution_grid",
    "figure_png",
    "html_report",
    "message_figure",
    "per_class_bars",
    "per_class_table",
    "qualitative",
    "stage_label",
    "stage_table",
    "to_markdown",
    "training_curves",
]
