"""Figs. 2-3: each stage's training and validation curves, with the epochs whose EFM was
active or recomputed."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from efm_seg.reporting.figures.common import (
    CURVE_PANELS,
    message_figure,
    new_figure,
    ordered_stages,
    runs_of,
    stage_colours,
)
from efm_seg.reporting.report import stage_label


# -- Figs. 2-3: training curves -------------------------------------------------------------------
def training_curves(
    histories: Mapping[str, pd.DataFrame],
    title: str = "Training and validation curves",
    best_epochs: Mapping[str, int] | None = None,
) -> Figure:
    """Loss, IoU, F1 and accuracy per epoch for every stage (paper Figs. 2-3).

    The stages are drawn one after another on one continuous *global* epoch axis (a stage's
    epochs follow the last epoch of the stage before it; the stage boundaries are dotted
    vertical lines with the stage names above), since each stage starts from the previous
    stage's best checkpoint. One colour per stage; training dashed, validation solid; the epochs
    at which the EFM was recomputed (``efm_refreshed``) are marked with small triangles on the
    validation curve, and epochs trained with the EFM loss (``efm_active``) are lightly shaded.

    Args:
        histories: Stage key (``baseline``, ``efm``, ``finetune``, ...) -> per-epoch history
            (see the module docstring). Known stages are drawn in the paper's order; empty
            histories are skipped.
        title: Figure title.
        best_epochs: Stage key -> the epoch whose weights were kept (its checkpoint); marked
            with a star on each validation curve.

    Returns:
        A 2x2 figure (loss / IoU / F1 / accuracy), 12 x 8 inches, with one legend below.
    """
    present = {s: h for s, h in histories.items() if h is not None and len(h)}
    if not present:
        return message_figure(title, "no training history was recorded")
    stages = ordered_stages(list(present))
    colours = stage_colours(stages)

    fig = new_figure(12, 8)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    spans: list[tuple[str, float, float]] = []
    offset = 0
    for stage in stages:
        history = present[stage].sort_values("epoch")
        epochs = history["epoch"].to_numpy()
        x = offset + (epochs - epochs.min() + 1)
        spans.append((stage, offset + 0.5, x.max() + 0.5))
        refreshed = history.get("efm_refreshed", pd.Series(False, index=history.index))
        refreshed = refreshed.fillna(False).astype(bool).to_numpy()
        active = history.get("efm_active", pd.Series(False, index=history.index))
        active = active.fillna(False).astype(bool).to_numpy()
        for ax, (key, _) in zip(axes, CURVE_PANELS, strict=True):
            for split, style in (("train", "--"), ("val", "-")):
                column = f"{split}_{key}"
                if column in history.columns:
                    ax.plot(x, history[column].to_numpy(float), style, color=colours[stage], lw=1.6)
            if f"val_{key}" in history.columns and refreshed.any():
                ax.plot(
                    x[refreshed],
                    history[f"val_{key}"].to_numpy(float)[refreshed],
                    "v",
                    color=colours[stage],
                    markersize=6,
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                )
            best = (best_epochs or {}).get(stage)
            if f"val_{key}" in history.columns and best is not None and (epochs == best).any():
                ax.plot(
                    x[epochs == best],
                    history[f"val_{key}"].to_numpy(float)[epochs == best],
                    "*",
                    color=colours[stage],
                    markersize=11,
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                )
            for first, last in runs_of(x[active]):
                ax.axvspan(first - 0.5, last + 0.5, color=colours[stage], alpha=0.06, lw=0)
        offset = int(x.max())

    for i, (ax, (_, label)) in enumerate(zip(axes, CURVE_PANELS, strict=True)):
        for _, start, _end in spans[1:]:
            ax.axvline(start, color="0.4", ls=":", lw=1)
        for stage, start, end in spans:
            ax.text(
                (start + end) / 2,
                1.01,
                stage_label(stage),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color=colours[stage],
            )
        ax.set_title(label, pad=14)
        ax.set_ylabel(label)
        if i >= 2:
            ax.set_xlabel("epoch (stages one after another)")
        ax.set_xlim(0.5, offset + 0.5)
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=True)

    handles = [Line2D([], [], color=colours[s], lw=2.5, label=stage_label(s)) for s in stages]
    handles += [
        Line2D([], [], color="0.3", ls="--", label="training"),
        Line2D([], [], color="0.3", ls="-", label="validation"),
        Line2D(
            [], [], color="0.3", marker="v", ls="", markeredgecolor="black", label="EFM recomputed"
        ),
        Patch(facecolor="0.3", alpha=0.15, label="EFM loss active"),
    ]
    if best_epochs:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="*",
                ls="",
                markersize=10,
                markeredgecolor="black",
                label="checkpoint kept",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(title, fontsize=14)
    return fig
