"""The study's ablation plot: each run's paired difference from the equal-budget baseline."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from efm_seg.parameters import StudyParams
from efm_seg.study.analysis import METRICS
from efm_seg.study.markdown import run_label

PLOTTED = ("miou", "boundary_iou", "ece")


def ablation_figure(paired: pd.DataFrame, study: StudyParams) -> Figure:
    """One panel per architecture and metric: mean paired difference with its interval.

    Dots right of zero beat the equal-budget baseline (left of zero for ECE, lower is better).
    """
    archs = list(study.architectures)
    rows = [paired[paired["arch"] == arch][["run", "stage"]].drop_duplicates() for arch in archs]
    height = max(2.5, 0.28 * max((len(r) for r in rows), default=1) + 1.2)
    fig = Figure(figsize=(4.2 * len(PLOTTED), height * len(archs)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(archs), len(PLOTTED), squeeze=False)
    for i, arch in enumerate(archs):
        data = paired[paired["arch"] == arch]
        labels = [run_label(r, s) for r, s in rows[i].itertuples(index=False)]
        for j, metric in enumerate(PLOTTED):
            ax = axes[i][j]
            entries = data[data["metric"] == metric]
            for y, (run, stage) in enumerate(rows[i].itertuples(index=False)):
                row = entries[(entries["run"] == run) & (entries["stage"] == stage)]
                if row.empty:
                    continue
                mean, low, high = row.iloc[0][["difference", "ci_low", "ci_high"]]
                colour = "#2ca02c" if stage == "finetune" else "#ff7f0e"
                if stage == "baseline":  # a baseline, or a one-run variant
                    colour = "#1f77b4" if run.startswith("baseline") else "#9467bd"
                if not math.isnan(low):
                    ax.plot([low, high], [y, y], color=colour, linewidth=1.5)
                ax.plot([mean], [y], "o", color=colour)
            ax.axvline(0.0, color="0.4", linewidth=0.8, linestyle="--")
            ax.set_yticks(range(len(labels)), labels if j == 0 else [""] * len(labels))
            ax.invert_yaxis()
            ax.set_title(f"{arch}: Δ {METRICS[metric]}", fontsize=10)
            ax.tick_params(labelsize=8)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Paired difference from the equal-budget baseline ({study.confidence:.0%} t interval, "
        f"{len(study.seeds)} seeds)",
        fontsize=11,
    )
    return fig
