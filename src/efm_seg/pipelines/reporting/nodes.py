"""Reporting nodes: the lineage check and provenance, the stage tables, the paper's figures,
and the HTML report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from efm_seg.basics.lineage import LineageError, check_stage_rows, classes_fingerprint
from efm_seg.basics.mappings import as_mapping
from efm_seg.basics.names import MODELS, STAGES
from efm_seg.basics.provenance import describe_commit
from efm_seg.data.imagery import display_rgb
from efm_seg.data.labels import LabelScheme
from efm_seg.data.samples import SampleStore
from efm_seg.parameters import DatasetParams, ReportingParams
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
from efm_seg.reporting.provenance_tables import (
    budget_sentence,
    budget_table,
    provenance_tables,
    stages_table,
)


def _by_model(*values: Any) -> dict[str, Any]:
    """The nodes' per-model inputs (in :data:`MODELS` order) by model."""
    return dict(zip(MODELS, values, strict=True))


def _history_run(history: pd.DataFrame) -> str | None:
    """The run that finished the stage (and saved its checkpoint): its last epoch's. A resumed
    stage's earlier epochs keep the run that trained them."""
    if "run_id" not in history or history.empty or pd.isna(history["run_id"].iloc[-1]):
        return None
    return str(history["run_id"].iloc[-1])


def _array_run(arrays: Mapping[str, np.ndarray], key: str) -> str | None:
    return str(arrays[key]) if key in arrays else None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def collect_provenance(
    evaluation_metrics: pd.DataFrame,
    baseline_record: dict[str, Any],
    efm_record: dict[str, Any],
    finetune_record: dict[str, Any],
    baseline_equal_record: dict[str, Any],
    baseline_history: pd.DataFrame,
    efm_history: pd.DataFrame,
    finetune_history: pd.DataFrame,
    baseline_equal_history: pd.DataFrame,
    baseline_snapshots: dict[str, np.ndarray],
    efm_snapshots: dict[str, np.ndarray],
    finetune_snapshots: dict[str, np.ndarray],
    baseline_equal_snapshots: dict[str, np.ndarray],
    baseline_predictions: dict[str, np.ndarray],
    efm_predictions: dict[str, np.ndarray],
    finetune_predictions: dict[str, np.ndarray],
    baseline_equal_predictions: dict[str, np.ndarray],
    samples: SampleStore,
    dataset: DatasetParams,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """Check that everything the report shows comes from one lineage; say where it comes from.

    Refused, naming the runs (= versions) involved:

    - stages trained on different data, or a stage that started from a checkpoint other than
      the previous stage's compared one (:func:`efm_seg.basics.lineage.check_stage_rows`);
    - a stage's training record, history or EFM snapshots from another run than the checkpoint
      that was evaluated, or its predictions from another evaluation than its scores;
    - the sample store (whose test images the figures show) or ``dataset.classes`` (which
      name the classes) changed since the stages were trained and scored.

    Returns:
        The report's provenance: this run's ``run_info``, the data fingerprints, and per stage
        the training and evaluation runs, the checkpoint it started from, device, precision,
        epochs, best epoch, durations, git commit, packages, machine and effective recipe.
    """
    stages = check_stage_rows(evaluation_metrics, "evaluation_metrics")
    absent = [s for s in MODELS if s not in stages]
    if absent:
        raise LineageError(
            f"evaluation_metrics has no rows for {absent}; run the evaluation pipeline again"
        )
    records = _by_model(baseline_record, efm_record, finetune_record, baseline_equal_record)
    histories = _by_model(baseline_history, efm_history, finetune_history, baseline_equal_history)
    snapshots = _by_model(
        baseline_snapshots, efm_snapshots, finetune_snapshots, baseline_equal_snapshots
    )
    predictions = _by_model(
        baseline_predictions, efm_predictions, finetune_predictions, baseline_equal_predictions
    )
    scheme = LabelScheme.from_params(as_mapping(dataset))
    provenance_stages: dict[str, dict[str, Any]] = {}
    behind: dict[str, int] = {}  # epochs of training behind each stage's model, in all
    for stage in MODELS:
        compared, evaluated = stages[stage]["checkpoint_run"], stages[stage]["evaluation_run"]
        found = {
            f"{stage}.training_record": (records[stage].get("lineage") or {}).get("run_id"),
            f"{stage}.history": _history_run(histories[stage]),
            f"{stage}.efm_snapshots": _array_run(snapshots[stage], "run_id"),
        }
        stale = {name: run for name, run in found.items() if run != compared}
        if stale:
            listed = ", ".join(f"{name} is from run {run}" for name, run in stale.items())
            choose = ",".join(f"{name}:{compared}" for name in stale)
            raise LineageError(
                f"{stage}: the evaluation scored the checkpoint of run {compared}, but {listed}. "
                f"Read the matching versions (--load-versions {choose}) or train and evaluate "
                f"the stage again (kedro run --pipelines {stage},evaluation,reporting)"
            )
        scored = (
            _array_run(predictions[stage], "checkpoint_run"),
            _array_run(predictions[stage], "evaluation_run"),
        )
        if scored != (compared, evaluated):
            raise LineageError(
                f"{stage}: {stage}.test_predictions come from the evaluation run {scored[1]} of "
                f"checkpoint run {scored[0]}, but evaluation_metrics from evaluation run "
                f"{evaluated} of checkpoint run {compared}; run the evaluation again"
            )
        record = records[stage]
        recipe = record.get("config") or {}
        init_run, init_stage = stages[stage]["init_run"], stages[stage]["init_stage"]
        weights = recipe.get("encoder_weights") or "random"
        row = evaluation_metrics[evaluation_metrics["stage"] == stage].iloc[0]
        behind[stage] = int(record.get("epochs_run") or 0) + behind.get(init_stage, 0)
        provenance_stages[stage] = {
            "training_run": compared,
            "started_from": f"{init_stage} checkpoint of run {init_run}"
            if init_run
            else f"new weights (seed {recipe.get('seed')}, encoder weights {weights})",
            "device": record.get("device"),
            "precision": record.get("precision"),
            "image_size": record.get("image_size"),
            "epochs_run": record.get("epochs_run"),
            "epochs_behind": behind[stage],
            "best_epoch": record.get("epoch"),
            "train_seconds": record.get("train_seconds"),
            "evaluation_run": evaluated,
            "evaluation_device": _plain(row.get("device")),
            "evaluation_seconds": _plain(row.get("seconds")),
            "git": (record.get("run") or {}).get("git"),
            "packages": (record.get("run") or {}).get("packages"),
            "machine": (record.get("run") or {}).get("machine"),
            "recipe": recipe,
            "evaluation_settings": json.loads(str(predictions[stage]["evaluation_settings"]))
            if "evaluation_settings" in predictions[stage]
            else {},
        }
    data = {key: stages["baseline"][key] for key in ("store", "split", "classes")}
    if samples.fingerprint != data["store"]:
        raise LineageError(
            f"the stages were trained and scored on sample store {data['store']}, but the store "
            f"is now {samples.fingerprint} (preprocessed again since): the figures would show "
            "other images than the ones scored. Train and evaluate the stages again: kedro run "
            "--pipelines training,evaluation,reporting"
        )
    now = classes_fingerprint(scheme.classes, scheme.ignore_index)
    if data["classes"] != now:
        raise LineageError(
            f"the stages were trained on classes {data['classes']}, but dataset.classes is now "
            f"{list(scheme.classes)} ({now}): the report would name the classes wrongly; "
            "restore the dataset block or train the stages again"
        )
    return {
        "report_run": dict(run_info),
        "data": {"dataset": as_mapping(dataset).get("name"), **data},
        "stages": provenance_stages,
    }


def make_tables(
    evaluation_metrics: pd.DataFrame,
    evaluation_per_class: pd.DataFrame,
    provenance: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """The stage comparison (with and without TTA), the per-class table and their Markdown.

    Returns:
        The stage table with TTA (as the paper reports), without TTA, the per-class table, and
        a Markdown document holding all three and where the stages come from.
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
            "# Training budget",
            budget_sentence(provenance["stages"]),
            to_markdown(budget_table(provenance["stages"])),
            "# Provenance",
            f"Report run {provenance['report_run'].get('run_id')}; sample store "
            f"{provenance['data']['store']}, split {provenance['data']['split']}.",
            to_markdown(stages_table(provenance["stages"])),
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
    baseline_equal_predictions: dict[str, np.ndarray],
    per_class: pd.DataFrame,
    samples: SampleStore,
    provenance: dict[str, Any],
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
    # The curves and EFM figures are the three stages' (the reference is a run of its own).
    histories = dict(zip(STAGES, (baseline_history, efm_history, finetune_history), strict=True))
    snapshots = dict(
        zip(STAGES, (baseline_snapshots, efm_snapshots, finetune_snapshots), strict=True)
    )
    predictions = _by_model(
        baseline_predictions, efm_predictions, finetune_predictions, baseline_equal_predictions
    )

    best_epochs = {s: record["best_epoch"] for s, record in provenance["stages"].items()}
    figures: dict[str, Figure] = {
        "training_curves.png": training_curves(histories, best_epochs=best_epochs)
    }
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
            np.stack([display_rgb(image) for image, _ in pairs]),
            np.stack([labels for _, labels in pairs]),
            {stage: predictions[stage]["predictions"] for stage in MODELS},
            list(scheme.classes),
            list(scheme.display_colours),
            scheme.ignore_index,
        )
    figures["per_class_iou.png"] = per_class_bars(per_class, metric="iou", tta=True)
    for stage in MODELS:
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
    for stage in sorted(MODELS, key=len, reverse=True):  # baseline_equal_ before baseline_
        if stem.startswith(f"{stage}_"):
            heading, sentence = FIGURE_TEXT[stem.removeprefix(f"{stage}_")]
            return heading.format(label=STAGE_LABELS[stage]), sentence
    return FIGURE_TEXT[stem]


def make_report(
    stage_table: pd.DataFrame,
    stage_table_no_tta: pd.DataFrame,
    per_class_table: pd.DataFrame,
    figure_png: dict[str, bytes],
    provenance: dict[str, Any],
    dataset: DatasetParams,
    reporting: ReportingParams,
) -> str:
    """One self-contained HTML page: provenance, the tables, every figure and the parameters.

    Every setting shown is the one recorded where it was used: each stage's effective training
    recipe (from its checkpoint) and the evaluation settings (from the evaluation's outputs), so
    a report made later, with other parameters, still says how its numbers were produced.
    """
    dataset = as_mapping(dataset)
    first = next(iter(provenance["stages"].values()), {})
    configuration = {
        "dataset": dataset,
        "evaluation (as scored)": first.get("evaluation_settings", {}),
    }
    reporting = as_mapping(reporting)
    run = provenance["report_run"]
    trained = ", ".join(
        f"{STAGE_LABELS[s]} {record['training_run']}" for s, record in provenance["stages"].items()
    )
    intro = (
        f"Made by run {run.get('run_id')} (environment {run.get('env')}, data root "
        f"{run.get('data_root')}, commit {describe_commit(run.get('git'))}). Stages trained "
        f"in runs: {trained}. See Provenance at the end for the data, recipes, devices, "
        "durations and versions."
    )
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
            "Training budget",
            budget_sentence(provenance["stages"]),
            budget_table(provenance["stages"]),
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
        intro=intro,
        provenance=provenance_tables(provenance),
    )
