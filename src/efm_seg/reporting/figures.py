"""The report figures (paper section 4, Figs. 2-9) as matplotlib Figures.

Every function returns a :class:`matplotlib.figure.Figure` built with the object API (an Agg
canvas attached, no pyplot global state), so they run headless and in parallel; the caller saves
them (``fig.savefig(path, dpi=...)`` or :func:`efm_seg.reporting.report.figure_png`).

Inputs:

* **history** of a stage -- a DataFrame with one row per epoch and the columns ``epoch, lr,
  train_loss, train_iou, train_f1, train_accuracy, val_loss, val_iou, val_f1, val_accuracy,
  efm_active`` (bool), ``efm_refreshed`` (bool: the EFM was recomputed before this epoch),
  ``seconds``.
* **snapshots** of a stage -- a dict with ``"epochs"`` int64 ``(E,)`` (the recompute epochs),
  ``"ids"`` str ``(n,)`` (the fixed validation images), ``"efm"`` uint8 ``(E, n, H, W)``
  (0..255 stands for 0..1) and ``"entropy"`` float16 ``(E, n, H, W)`` (nats, at most log C).
  ``E`` may be 0; the snapshot figures then show a short text instead of failing.
* **qualitative samples** -- images uint8 ``(n, H, W, 3)``, targets uint8 ``(n, H, W)`` (with
  ``ignore_index``), predictions per stage uint8 ``(n, H, W)``, the class names and the dataset's
  RGB palette.
* **confusion** of a stage -- ``(C, C)`` counts, rows = ground truth, columns = prediction.
* **per-class metrics** -- rows ``(stage, tta, class_name, support, iou, f1, precision, recall,
  boundary_iou)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from efm_seg.reporting.report import METRIC_LABELS, STAGE_ORDER, stage_label

__all__ = [
    "STAGE_COLOURS",
    "colourise",
    "confusion_figure",
    "difference_map",
    "evolution_grid",
    "message_figure",
    "per_class_bars",
    "qualitative",
    "training_curves",
]

#: One colour per stage (tab10 blue / orange / green), the same in every figure.
STAGE_COLOURS: dict[str, str] = {"baseline": "#1f77b4", "efm": "#ff7f0e", "finetune": "#2ca02c"}
_EXTRA_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_CURVE_PANELS = (("loss", "loss"), ("iou", "IoU"), ("f1", "F1"), ("accuracy", "accuracy"))
#: Colour of ignored pixels in the coloured masks.
IGNORE_COLOUR = (0, 0, 0)
NO_SNAPSHOTS = "no EFM snapshots were recorded for this stage"


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _ordered(stages: Sequence[str]) -> list[str]:
    """Known stages in the paper's order, then unknown ones in their given order."""
    return sorted(stages, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else 99)


def _stage_colours(stages: Sequence[str]) -> dict[str, str]:
    extra = iter(_EXTRA_COLOURS * 4)
    return {s: STAGE_COLOURS[s] if s in STAGE_COLOURS else next(extra) for s in stages}


def message_figure(title: str, message: str, width: float = 8.0, height: float = 1.6) -> Figure:
    """A small figure that only says something (used when there is nothing to plot)."""
    fig = _figure(width, height, layout=None)
    fig.suptitle(title, fontsize=12)
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, style="italic")
    return fig


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive integers as ``(first, last)`` pairs."""
    runs: list[tuple[int, int]] = []
    for v in (int(v) for v in values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


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
    stages = _ordered(list(present))
    colours = _stage_colours(stages)

    fig = _figure(12, 8)
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
        for ax, (key, _) in zip(axes, _CURVE_PANELS, strict=True):
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
            for first, last in _runs(x[active]):
                ax.axvspan(first - 0.5, last + 0.5, color=colours[stage], alpha=0.06, lw=0)
        offset = int(x.max())

    for i, (ax, (_, label)) in enumerate(zip(axes, _CURVE_PANELS, strict=True)):
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
    fig = _figure(max(8.0, cell * len(columns) + 2.2), max(2.8, cell * aspect * len(rows) + 1.2))
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
    fig = _figure(
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


# -- Figs. 8-9: qualitative results ---------------------------------------------------------------
def colourise(
    labels: np.ndarray,
    class_colours: Sequence[Sequence[int]],
    ignore_index: int | None = 255,
    ignore_colour: Sequence[int] = IGNORE_COLOUR,
) -> np.ndarray:
    """An ``(H, W)`` label map as ``(H, W, 3)`` uint8 RGB in the dataset palette.

    ``ignore_index`` and any value outside ``0..C-1`` get ``ignore_colour``.
    """
    palette = np.asarray(class_colours, dtype=np.uint8).reshape(-1, 3)
    lookup = np.tile(np.asarray(ignore_colour, dtype=np.uint8), (256, 1))
    lookup[: len(palette)] = palette[:256]
    if ignore_index is not None and 0 <= ignore_index < 256:
        lookup[ignore_index] = ignore_colour
    return lookup[np.asarray(labels).astype(np.uint8)]


def qualitative(
    images: np.ndarray,
    targets: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    class_colours: Sequence[Sequence[int]],
    ignore_index: int | None = 255,
    sample_ids: Sequence[str] | None = None,
    title: str = "Qualitative results: input, ground truth and predictions",
) -> Figure:
    """Input / ground truth / one prediction per stage, side by side (paper Figs. 8-9).

    Masks use the dataset's own palette; ignored pixels are black (``IGNORE_COLOUR``). A
    prediction's panel title carries its pixel accuracy on that image (ignored pixels excluded).
    One legend below with a patch per class and one for "ignore".

    Args:
        images: ``(n, H, W, 3)`` uint8 RGB.
        targets: ``(n, H, W)`` uint8 labels with ``ignore_index``.
        predictions: Stage key -> ``(n, H, W)`` uint8 labels (stages drawn in the paper's order).
        class_names: ``C`` names, training-label order.
        class_colours: ``C`` RGB triples (0..255).
        ignore_index: Label of pixels not scored.
        sample_ids: Optional row labels (defaults to ``sample 1..n``).
        title: Figure title.

    Returns:
        An ``n x (2 + stages)`` grid figure.
    """
    images = np.asarray(images)
    targets = np.asarray(targets)
    n = images.shape[0] if images.ndim == 4 else 0
    if n == 0:
        return message_figure(title, "no qualitative samples were given")
    stages = _ordered(list(predictions))
    ids = list(sample_ids) if sample_ids is not None else [f"sample {i + 1}" for i in range(n)]
    headers = ["input", "ground truth", *(stage_label(s) for s in stages)]
    ncols = len(headers)
    height, width = images.shape[1:3]
    cell = min(3.0, 13.0 / ncols)
    fig = _figure(max(8.0, cell * ncols + 0.6), cell * height / max(width, 1) * n + 1.6)
    axes = fig.subplots(n, ncols, squeeze=False)
    for i in range(n):
        target = targets[i]
        valid = target != ignore_index if ignore_index is not None else np.ones_like(target, bool)
        panels = [
            (images[i], "input"),
            (colourise(target, class_colours, ignore_index), "ground truth"),
        ]
        for stage in stages:
            prediction = np.asarray(predictions[stage])[i]
            accuracy = float((prediction[valid] == target[valid]).mean()) if valid.any() else 0.0
            panels.append(
                (
                    colourise(prediction, class_colours, ignore_index),
                    f"{stage_label(stage)}\npixel acc. {accuracy:.3f}",
                )
            )
        for j, (picture, header) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(header if i == 0 or j >= 2 else "", fontsize=9)
            if j == 0:
                ax.set_ylabel(str(ids[i]), fontsize=9)
    handles = [
        Patch(facecolor=np.asarray(c, float) / 255.0, edgecolor="0.3", label=name)
        for name, c in zip(class_names, class_colours, strict=False)
    ]
    handles.append(Patch(facecolor=np.asarray(IGNORE_COLOUR) / 255.0, label="ignore"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 8),
        fontsize=9,
        title="classes",
        title_fontsize=9,
    )
    fig.suptitle(title, fontsize=12)
    return fig


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
    fig = _figure(side + 1.2, side)
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
    stages = _ordered(list(dict.fromkeys(rows["stage"])))
    classes = list(dict.fromkeys(rows["class_name"]))
    colours = _stage_colours(stages)

    fig = _figure(float(np.clip(1.1 * len(classes) + 3, 8.0, 14.0)), 5.0)
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
