"""Per class: the confusion matrix and each stage's per-class scores as bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from efm_seg.reporting.figures.common import (
    message_figure,
    new_figure,
    ordered_stages,
    stage_colours,
)
from efm_seg.reporting.report import METRIC_LABELS, stage_label


# -- extra: confusion matrix and per-class bars ---------------------------------------------------
def confusion_figure(
    confusion: np.ndarray,
    class_names: Sequence[str],
    stage: str,
    annotate_up_to: int = 20,
) -> Figure:
    """Row-normalised confusion matrix of a stage on the test set.

    Cell ``(i, j)`` is the fraction of ground-truth class ``i`` pixels predicted as ``j`` (a row
    sums to 1; rows of absent classes are 0). Values are written in the cells for up to
    ``annotate_up_to`` classes.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be C x C, got shape {counts.shape}")
    classes = counts.shape[0]
    names = list(class_names) if len(class_names) == classes else [str(i) for i in range(classes)]
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)

    side = float(np.clip(0.6 * classes + 3.5, 6.0, 12.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(classes), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(classes), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if classes <= annotate_up_to:
        size = 9 if classes <= 10 else 7
        for i in range(classes):
            for j in range(classes):
                ax.text(
                    j,
                    i,
                    f"{rates[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, label="fraction of the ground-truth class (row)", shrink=0.85)
    ax.set_title(f"{stage_label(stage)}: confusion matrix (row-normalised)")
    return fig


def per_class_bars(
    per_class: pd.DataFrame,
    metric: str = "iou",
    tta: bool = False,
) -> Figure:
    """Grouped bars: the per-class ``metric`` of every stage.

    Only the rows with ``tta == tta`` are drawn (default: without test-time augmentation, the
    plain model; pass ``tta=True`` for the TTA rows), so each class has one bar per stage.

    Args:
        per_class: Rows ``(stage, tta, class_name, support, iou, f1, precision, recall,
            boundary_iou)``.
        metric: The column to draw.
        tta: Which evaluation to show.

    Returns:
        The bar chart; classes on x, the metric on y (0..1), one colour per stage, legend.
    """
    label = METRIC_LABELS.get(metric, metric)
    title = f"Per-class {label} by training stage ({'with' if tta else 'without'} TTA)"
    rows = per_class[per_class["tta"].astype(bool) == tta] if "tta" in per_class else per_class
    if rows.empty or metric not in rows.columns:
        return message_figure(title, f"no per-class {label} values to show")
    stages = ordered_stages(list(dict.fromkeys(rows["stage"])))
    classes = list(dict.fromkeys(rows["class_name"]))
    colours = stage_colours(stages)

    fig = new_figure(float(np.clip(1.1 * len(classes) + 3, 8.0, 14.0)), 5.0)
    ax = fig.subplots()
    width = 0.8 / len(stages)
    x = np.arange(len(classes))
    for k, stage in enumerate(stages):
        this = rows[rows["stage"] == stage].drop_duplicates("class_name", keep="last")
        values = this.set_index("class_name")[metric].reindex(classes).to_numpy(float)
        bars = ax.bar(
            x + (k - (len(stages) - 1) / 2) * width,
            values,
            width,
            color=colours[stage],
            label=stage_label(stage),
        )
        if len(classes) * len(stages) <= 36:
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    if len(classes) > 6:
        ax.set_xticks(x, classes, rotation=30, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(x, classes)
    ax.set_xlabel("class")
    ax.set_ylabel(label)
    top = np.nanmax(rows[metric].to_numpy(float)) if rows[metric].notna().any() else 1.0
    ax.set_ylim(0.0, 1.08 if top <= 1.0 else top * 1.1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="stage", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    ax.set_title(title)
    return fig
