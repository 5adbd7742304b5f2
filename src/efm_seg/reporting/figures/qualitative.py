"""Figs. 8-9: images, ground truth and each stage's prediction side by side, in the dataset's
colours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from efm_seg.reporting.figures.common import (
    IGNORE_COLOUR,
    message_figure,
    new_figure,
    ordered_stages,
)
from efm_seg.reporting.report import stage_label


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
    stages = ordered_stages(list(predictions))
    ids = list(sample_ids) if sample_ids is not None else [f"sample {i + 1}" for i in range(n)]
    headers = ["input", "ground truth", *(stage_label(s) for s in stages)]
    ncols = len(headers)
    height, width = images.shape[1:3]
    cell = min(3.0, 13.0 / ncols)
    fig = new_figure(max(8.0, cell * ncols + 0.6), cell * height / max(width, 1) * n + 1.6)
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
