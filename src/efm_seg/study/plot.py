"""The study's figures: each run's paired difference from the equal-budget baseline, and the
reference's validation curves (has it converged?)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from efm_seg.parameters import StudyParams
from efm_seg.study.analysis import METRICS
from efm_seg.study.grid import REFERENCE, Cell, study_runs
from efm_seg.study.markdown import run_label

PLOTTED = ("miou", "boundary_iou", "ece", "ece_scaled")
"""Accuracy and calibration, before and after temperature scaling: a calibration gain counts
only if it survives the scaling of both sides."""


def ablation_figure(paired: pd.DataFrame, pairs: pd.DataFrame, study: StudyParams) -> Figure:
    """One panel per architecture and metric: mean paired difference with its interval, and
    each pair's difference (``pairs``, :func:`~efm_seg.study.analysis.pair_differences`) as a
    small grey dot, so that the spread over folds and seeds shows.

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
                each = pairs[
                    (pairs["arch"] == arch) & (pairs["run"] == run) & (pairs["stage"] == stage)
                    & (pairs["metric"] == metric)
                ]["difference"]  # fmt: skip
                ax.plot(each, [y + 0.22] * len(each), ".", color="0.55", markersize=3)
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
        f"Paired difference from the equal-budget baseline ({study.confidence:.0%} t interval "
        f"over {pair_count(study)}; grey: each pair)",
        fontsize=11,
    )
    return fig


def pair_count(study: StudyParams) -> str:
    """How many pairs a complete grid compares each run over, in words (``12 or 24 pairs: 6
    folds × 2 or 4 seeds`` when ``study.extra_seeds`` gives some runs more)."""
    compared = [run for run in study_runs(study) if run != REFERENCE]
    seeds = sorted({len(study.run_seeds(run)) for run in compared})
    folds = len(study.folds)
    pairs = [folds * n for n in seeds] if folds else seeds
    plural = "s" * (pairs != [1])
    seed_text = f"{' or '.join(map(str, seeds))} seed{'s' * (seeds != [1])}"
    if not folds:
        return seed_text
    return (
        f"{' or '.join(map(str, pairs))} pair{plural}: {folds} fold{'s' * (folds != 1)} "
        f"× {seed_text}"
    )


def convergence_figure(
    histories: Mapping[Cell, pd.DataFrame], table: pd.DataFrame, study: StudyParams
) -> Figure:
    """One panel per architecture and fold: the equal-budget baseline's validation IoU per
    epoch, a line per seed, its last ``study.convergence.last_fraction`` of epochs shaded, and
    the fold's mean gain over them with the verdict (``table``,
    :func:`~efm_seg.study.convergence.convergence_table`)."""
    rule = study.convergence
    panels = list(dict.fromkeys((cell.arch, cell.fold) for cell in histories))
    if not panels:
        raise ValueError("no reference run's history to draw (study.check_convergence)")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (arch, fold) in zip(axes, panels, strict=False):
        judged = table[(table["arch"] == arch) & (table["fold"] == fold)]
        for cell, history in histories.items():
            if (cell.arch, cell.fold) == (arch, fold):
                # A resumed run repeats the epochs it trained again: its last record counts
                # (as in convergence_table).
                curve = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
                ax.plot(curve["epoch"], curve["val_iou"], linewidth=1.0, label=f"seed {cell.seed}")
        title = f"{arch}, {fold}"
        if not judged.empty:
            for window in judged[["from_epoch", "epochs"]].drop_duplicates().itertuples():
                ax.axvspan(window.from_epoch, window.epochs, color="0.85", zorder=0)
            first = judged.iloc[0]
            verdict = "fails" if bool(first["fold_fails"]) else "plateaued"
            title += f": {first['fold_gain']:+.4f} ({verdict})"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("validation IoU", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Equal-budget baseline, validation IoU per epoch\nshaded: the last "
        f"{rule.last_fraction:.0%} of epochs; a fold fails at a mean gain ≥ {rule.tolerance}",
        fontsize=10,
    )
    return fig
