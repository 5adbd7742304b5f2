"""What every report figure shares: a headless canvas, the stages' order and colours, and a
figure that only says something."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from efm_seg.reporting.report import STAGE_ORDER

#: One colour per stage (tab10 blue / orange / green), the same in every figure.
STAGE_COLOURS: dict[str, str] = {
    "baseline": "#1f77b4",
    "efm": "#ff7f0e",
    "finetune": "#2ca02c",
    "baseline_equal": "#7f7f7f",
}
_EXTRA_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
CURVE_PANELS = (("loss", "loss"), ("iou", "IoU"), ("f1", "F1"), ("accuracy", "accuracy"))
#: Colour of ignored pixels in the coloured masks.
IGNORE_COLOUR = (0, 0, 0)
NO_SNAPSHOTS = "no EFM snapshots were recorded for this stage"


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def ordered_stages(stages: Sequence[str]) -> list[str]:
    """Known stages in the paper's order, then unknown ones in their given order."""
    return sorted(stages, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else 99)


def stage_colours(stages: Sequence[str]) -> dict[str, str]:
    extra = iter(_EXTRA_COLOURS * 4)
    return {s: STAGE_COLOURS[s] if s in STAGE_COLOURS else next(extra) for s in stages}


def message_figure(title: str, message: str, width: float = 8.0, height: float = 1.6) -> Figure:
    """A small figure that only says something (used when there is nothing to plot)."""
    fig = new_figure(width, height, layout=None)
    fig.suptitle(title, fontsize=12)
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, style="italic")
    return fig


def runs_of(values: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive integers as ``(first, last)`` pairs."""
    runs: list[tuple[int, int]] = []
    for v in (int(v) for v in values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs
