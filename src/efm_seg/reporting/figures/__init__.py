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

from efm_seg.reporting.figures.classes import confusion_figure, per_class_bars
from efm_seg.reporting.figures.common import STAGE_COLOURS, message_figure
from efm_seg.reporting.figures.curves import training_curves
from efm_seg.reporting.figures.evolution import difference_map, evolution_grid
from efm_seg.reporting.figures.qualitative import colourise, qualitative

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
