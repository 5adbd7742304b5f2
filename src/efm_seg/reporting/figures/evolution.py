"""Figs. 4-7: the EFM and the entropy of fixed validation images as training goes on, and the
difference map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from efm_seg.reporting.figures.common import NO_SNAPSHOTS, message_figure, new_figure
from efm_seg.reporting.report import stage_label


# -- Figs. 4-7: EFM / entropy evolution and difference map ----------------------------------------
def _snapshot_arrays(snapshots: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    epochs = np.asarray(snapshots.get("epochs", np.zeros(0)), dtype=np.int64).reshape(-1)
    efm = np.asarray(snapshots.get("efm", np.zeros((0, 0, 0, 0))))
    n = efm.shape[1] if efm.ndim == 4 else 0
    ids = np.asarray(snapshots.get("ids", np.array([], dtype=str))).astype(str).reshape(-1)
    if len(ids) != n:
        ids = np.array([f"image {i + 1}" for i in range(n)])
    return epochs, ids, n


def _pick_columns(count: int, limit: int) -> list[int]:
    """``limit`` evenly spaced indices of ``range(count)``, always with the first and the last."""
    if count <= limit:
        return list(range(count))
    return sorted({int(np.round(v)) for v in np.linspace(0, count - 1, limit)})


def evolution_grid(
    snapshots: Mapping[str, Any],
    kind: Literal["efm", "entropy"],
    stage: str,
    max_columns: int = 8,
    max_images: int = 6,
) -> Figure:
    """The EFM or entropy of the fixed validation images over the recompute epochs (Figs. 4-5).

    Rows are the snapshot images (their ids as row labels), columns the recompute epochs
    (titled ``epoch N``; with more than ``max_columns`` epochs an evenly spaced subset that keeps
    the first and the last). EFM is shown on its fixed 0..1 scale (``inferno``); entropy on
    0..max over the whole grid (``viridis``), so the columns compare. One shared colour bar.

    Args:
        snapshots: The stage's snapshot dict (see the module docstring).
        kind: ``"efm"`` or ``"entropy"``.
        stage: Stage key (for the title).
        max_columns: The most epochs shown.
        max_images: The most images (rows) shown (the first ones).

    Returns:
        The grid figure, or a small text figure when no snapshots were recorded.
    """
    if kind not in ("efm", "entropy"):
        raise ValueError(f"kind must be 'efm' or 'entropy', not {kind!r}")
    name = "EFM" if kind == "efm" else "entropy"
    title = f"{stage_label(stage)}: {name} evolution over the EFM recompute epochs"
    epochs, ids, n = _snapshot_arrays(snapshots)
    data = np.asarray(snapshots.get(kind, np.zeros((0, 0, 0, 0))))
    if len(epochs) == 0 or n == 0 or data.ndim != 4 or data.shape[0] == 0:
        return message_figure(title, NO_SNAPSHOTS)

    columns = _pick_columns(len(epochs), max_columns)
    rows = list(range(min(n, max_images)))
    if kind == "efm":
        values = data[np.ix_(columns, rows)].astype(np.float32) / 255.0
        norm, cmap, label = Normalize(0.0, 1.0), "inferno", "EFM (0–1)"
    else:
        values = data[np.ix_(columns, rows)].astype(np.float32)
        finite = np.isfinite(values)
        top = float(values[finite].max()) if finite.any() else 0.0
        norm, cmap, label = Normalize(0.0, max(top, 1e-6)), "viridis", "entropy (nats)"

    height, width = values.shape[2:]
    cell = min(2.2, 11.0 / len(columns))
    aspect = height / max(width, 1)
    fig = new_figure(max(8.0, cell * len(columns) + 2.2), max(2.8, cell * aspect * len(rows) + 1.2))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    image = None
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r, c]
            image = ax.imshow(values[c, r], cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"epoch {int(epochs[column])}", fontsize=10)
            if c == 0:
                ax.set_ylabel(str(ids[row]), fontsize=9)
    fig.colorbar(image, ax=axes, label=label, shrink=0.9, fraction=0.04)
    fig.suptitle(title, fontsize=12)
    return fig


def difference_map(
    snapshots: Mapping[str, Any],
    stage: str,
    max_images: int = 8,
    columns: int = 4,
) -> Figure:
    """EFM(first recompute epoch) − EFM(last) per snapshot image (paper Figs. 6-7).

    Red where the error fingerprint went down during the stage, blue where it went up, white for
    no change: ``RdBu_r`` on a symmetric scale ``[-m, m]`` centred at 0, ``m`` the largest
    absolute change over all panels. Each panel is titled with the image id and the mean change.

    Args:
        snapshots: The stage's snapshot dict (see the module docstring).
        stage: Stage key (for the title).
        max_images: The most images shown.
        columns: Panels per row.

    Returns:
        The figure, or a small text figure when fewer than two snapshot epochs exist.
    """
    title = f"{stage_label(stage)}: difference error map (start − end)"
    epochs, ids, n = _snapshot_arrays(snapshots)
    efm = np.asarray(snapshots.get("efm", np.zeros((0, 0, 0, 0))))
    if len(epochs) == 0 or n == 0 or efm.ndim != 4 or efm.shape[0] == 0:
        return message_figure(title, NO_SNAPSHOTS)
    if efm.shape[0] < 2:
        return message_figure(
            title,
            f"only one EFM snapshot (epoch {int(epochs[0])}); a difference needs two or more",
        )

    shown = min(n, max_images)
    diff = (efm[0, :shown].astype(np.float32) - efm[-1, :shown].astype(np.float32)) / 255.0
    limit = max(float(np.abs(diff).max()), 1e-3)
    norm = Normalize(-limit, limit)
    ncols = min(columns, shown)
    nrows = -(-shown // ncols)
    height, width = diff.shape[1:]
    cell = min(3.0, 11.0 / ncols)
    fig = new_figure(
        max(8.0, cell * ncols + 2.0), max(3.0, cell * height / max(width, 1) * nrows + 1.3)
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= shown:
            ax.set_axis_off()
            continue
        image = ax.imshow(diff[i], cmap="RdBu_r", norm=norm, interpolation="nearest")
        ax.set_title(f"{ids[i]}\nmean change {diff[i].mean():+.3f}", fontsize=9)
    fig.colorbar(
        image, ax=axes, label="EFM start − end (red: error reduced)", shrink=0.9, fraction=0.04
    )
    fig.suptitle(f"{title}, epoch {int(epochs[0])} − epoch {int(epochs[-1])}", fontsize=12)
    return fig
