"""Reporting nodes: the stage tables, the paper's figures, and the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import (
    DatasetParams,
    EFMMethodParams,
    EvaluationParams,
    PreprocessingParams,
    ReportingParams,
    StageOverrides,
    TrainingParams,
    as_mapping,
)
from efm_seg.reporting import (
    STAGE_LABELS,
    confusion_figure,
    difference_map,
    evolution_grid,
    figure_png,
    html_report,
    per_class_bars,
    qualitative,
    stage_table,
    to_markdown,
    training_curves,
)

STAGES = ("baseline", "efm", "finetune")


def make_tables(
    evaluation_metrics: pd.DataFrame, evaluation_per_class: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """The stage comparison (with and without TTA), the per-class table and their Markdown.

    Returns:
        The stage table with TTA (as the paper reports), without TTA, the per-class table, and
        a Markdown document holding all three.
    """
    with_tta = stage_table(evaluation_metrics, tta=True)
    without_tta = stage_table(evaluation_metrics, tta=False)
    per_class = evaluation_per_class[evaluation_per_class["tta"]].drop(columns=["tta"])
    columns = ["stage", "class_name", "support", "iou", "f1", "precision", "recall", "boundary_iou"]
    per_class = per_class[[c for c in columns if c in per_class.columns]].reset_index(drop=True)
    markdown = "\n\n".join(
        [
            "# Stage comparison on the test split (with TTA, as the paper's Tables 1–2)",
            to_markdown(with_tta),
            "# Without TTA",
            to_markdown(without_tta),
            "# Per class (with TTA)",
            to_markdown(per_class),
        ]
    )
    return with_tta, without_tta, per_class, markdown + "\n"


FIGURE_TEXT = {
    "training_curves": (
        "Training and validation curves (paper Figs. 2–3)",
        "Loss, IoU, F1 and accuracy per epoch for each stage: dashed lines are training, solid "
        "lines validation (on the EMA weights where EMA is on); markers show the epochs where the "
        "EFM was recomputed.",
    ),
    "efm_evolution": (
        "EFM evolution — {label} (paper Figs. 4–5, top)",
        "The error fingerprint map of fixed validation images at each recompute epoch: bright "
        "where the model errs or hesitates. As training progresses it should shrink and settle "
        "on object boundaries.",
    ),
    "entropy_evolution": (
        "Entropy evolution — {label} (paper Figs. 4–5, bottom)",
        "The prediction entropy of the same images, in nats: the model's uncertainty, which "
        "falls as it grows confident.",
    ),
    "efm_difference": (
        "EFM difference, start − end — {label} (paper Figs. 6–7)",
        "The first recompute's EFM minus the last one's: red where errors and uncertainty were "
        "reduced during the stage, blue where they grew.",
    ),
    "qualitative": (
        "Qualitative results (paper Figs. 8–9)",
        "Test images, their ground truth and each stage's prediction (with TTA), coloured with "
        "the dataset's palette.",
    ),
    "per_class_iou": (
        "Per-class IoU",
        "The IoU of every class for each stage (with TTA): which classes the EFM helps.",
    ),
    "confusion": (
        "Confusion matrix — {label}",
        "Row-normalised: each row shows where the test pixels of one ground-truth class went "
        "(with TTA).",
    ),
}


def make_figures(
    baseline_history: pd.DataFrame,
    efm_history: pd.DataFrame,
    finetune_history: pd.DataFrame,
    baseline_snapshots: dict[str, np.ndarray],
    efm_snapshots: dict[str, np.ndarray],
    finetune_snapshots: dict[str, np.ndarray],
    baseline_predictions: dict[str, np.ndarray],
    efm_predictions: dict[str, np.ndarray],
    finetune_predictions: dict[str, np.ndarray],
    per_class: pd.DataFrame,
    samples: SampleStore,
    dataset: DatasetParams,
    reporting: ReportingParams,
) -> tuple[dict[str, Figure], dict[str, bytes]]:
    """Every figure of the report, as figures (saved as PNG files) and as PNG bytes.

    Returns:
        ``{file name: Figure}`` for the figures folder, and the same figures as PNG bytes (in
        report order) for the HTML report.
    """
    scheme = LabelScheme.from_params(as_mapping(dataset))
    dpi = ReportingParams.model_validate(reporting).dpi
    histories = dict(zip(STAGES, (baseline_history, efm_history, finetune_history), strict=True))
    snapshots = dict(
        zip(STAGES, (baseline_snapshots, efm_snapshots, finetune_snapshots), strict=True)
    )
    predictions = dict(
        zip(STAGES, (baseline_predictions, efm_predictions, finetune_predictions), strict=True)
    )

    figures: dict[str, Figure] = {"training_curves.png": training_curves(histories)}
    for stage in STAGES:
        figures[f"{stage}_efm_evolution.png"] = evolution_grid(snapshots[stage], "efm", stage)
        figures[f"{stage}_entropy_evolution.png"] = evolution_grid(
            snapshots[stage], "entropy", stage
        )
        figures[f"{stage}_efm_difference.png"] = difference_map(snapshots[stage], stage)

    ids = [str(i) for i in predictions["finetune"]["ids"]]
    if ids:
        pairs = [samples.read(i) for i in ids]
        figures["qualitative.png"] = qualitative(
            np.stack([image for image, _ in pairs]),
            np.stack([labels for _, labels in pairs]),
            {stage: predictions[stage]["predictions"] for stage in STAGES},
            list(scheme.classes),
            list(scheme.display_colours),
            scheme.ignore_index,
        )
    figures["per_class_iou.png"] = per_class_bars(per_class, metric="iou", tta=True)
    for stage in STAGES:
        figures[f"{stage}_confusion.png"] = confusion_figure(
            predictions[stage]["confusion_tta_true"]
            if "confusion_tta_true" in predictions[stage]
            else predictions[stage]["confusion_tta_false"],
            list(scheme.classes),
            stage,
        )
    return figures, {name: figure_png(figure, dpi=dpi) for name, figure in figures.items()}


def _caption(name: str) -> tuple[str, str]:
    stem = name.removesuffix(".png")
    for stage in STAGES:
        if stem.startswith(f"{stage}_"):
            heading, sentence = FIGURE_TEXT[stem.removeprefix(f"{stage}_")]
            return heading.format(label=STAGE_LABELS[stage]), sentence
    return FIGURE_TEXT[stem]


def make_report(
    stage_table: pd.DataFrame,
    stage_table_no_tta: pd.DataFrame,
    per_class_table: pd.DataFrame,
    figure_png: dict[str, bytes],
    dataset: DatasetParams,
    preprocessing: PreprocessingParams,
    training: TrainingParams,
    efm_method: EFMMethodParams,
    evaluation: EvaluationParams,
    reporting: ReportingParams,
    baseline_overrides: StageOverrides,
    efm_overrides: StageOverrides,
    finetune_overrides: StageOverrides,
) -> str:
    """One self-contained HTML page: the configuration, the tables and every figure."""
    dataset = as_mapping(dataset)
    configuration = {
        "dataset": dataset,
        "preprocessing": as_mapping(preprocessing),
        "training (shared)": as_mapping(training),
        "baseline overrides": as_mapping(baseline_overrides),
        "efm overrides": as_mapping(efm_overrides),
        "finetune overrides": as_mapping(finetune_overrides),
        "efm_method": as_mapping(efm_method),
        "evaluation": as_mapping(evaluation),
    }
    reporting = as_mapping(reporting)
    tables = [
        (
            "Stage comparison (test split, with TTA)",
            "The paper's Tables 1–2 for this run: support-weighted accuracy, precision, recall, "
            "IoU and F1 (recall equals accuracy), plus mIoU over the classes present, Boundary "
            "IoU and expected calibration error.",
            stage_table,
        ),
        (
            "Stage comparison (test split, without TTA)",
            "The same metrics from a single forward pass per image.",
            stage_table_no_tta,
        ),
        (
            "Per class (with TTA)",
            "IoU, F1, precision, recall and Boundary IoU of each class; support is the class's "
            "number of test pixels.",
            per_class_table,
        ),
    ]
    figures = [(*_caption(name), png) for name, png in figure_png.items()]
    return html_report(
        title=str(reporting.get("title", f"efm-seg run — {dataset.get('name', 'dataset')}")),
        configuration=configuration,
        tables=tables,
        figures=figures,
    )
