"""Experiment tracking with MLflow, through kedro-mlflow (the ``mlflow`` extra).

One MLflow run per Kedro run, the *parent*, in the experiment ``efm-seg-<env>`` of the store
that ``conf/base/mlflow.yml`` names (default: ``mlflow.db`` beside ``conf/``, SQLite). It holds:

- the parameters of every node run, flattened (``training.optimizer.lr``, ``efm.overrides...``:
  kedro-mlflow), and tags naming the Kedro run (``efm_seg.run_id``, environment, pipelines);
- one nested run per trained stage (``baseline``, ``efm``, ``finetune``, or a study cell): the
  stage's effective recipe as parameters, its per-epoch history as metrics (step = epoch), its
  best validation scores, and its best checkpoint as an artifact (not for study cells: a study
  trains hundreds);
- the test scores of each stage (``<stage>.test_miou``, ...), and the reporting outputs (tables,
  figures, the report) as artifacts under ``reporting/``;
- after ``kedro run --pipelines training`` (kedro-mlflow's ``PipelineML``, see
  ``pipeline_registry``), the MLflow model ``model``: the predict pipeline in memory with the
  checkpoint this run trained (that version alone, not every version of the catalog entry).

The steps of an orchestrated run (efm_seg.framework.deployment: one Airflow DAG run) share one
Kedro run
id, and so one parent run: a step whose run id already has a parent run logs into it.

``params:tracking.enabled`` switches it all off (``kedro run --params tracking.enabled=false``);
without the ``mlflow`` extra installed, nothing is tracked. kedro-mlflow's own hook is disabled in
``settings.py`` and driven from :class:`TrackingHook`, so that the switch also keeps it from
creating a store at all.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from pydantic import BaseModel

from efm_seg.basics.mappings import as_mapping
from efm_seg.basics.names import TRAINING_TAG

logger = logging.getLogger(__name__)

RUN_ID_TAG = "efm_seg.run_id"
STAGE_TAG = "efm_seg.stage"
# Scores of the test split logged on the parent run, per stage (without TTA, and with: _tta).
TEST_SCORES = ("miou", "mf1", "accuracy", "boundary_iou", "ece")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: MLflow parameters are flat."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def epoch_metrics(history) -> list[tuple[int, dict[str, float]]]:
    """``[(epoch, {column: value})]`` of a stage's history table: its numeric columns."""
    rows = []
    for row in history.to_dict("records"):
        values = {
            key: float(value)
            for key, value in row.items()
            if key != "epoch"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        }
        rows.append((int(row["epoch"]), values))
    return rows


def saved_path(catalog, name: str) -> Path | None:
    """Where the catalog's ``name`` was just saved (its save version when versioned)."""
    dataset = catalog.get(name)
    if dataset is None or not hasattr(dataset, "_filepath"):
        return None
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        path = Path(dataset._get_versioned_path(dataset.resolve_save_version()))
    else:
        path = Path(dataset._filepath)
    return path if path.exists() else None


def _pin_versions(catalog, names) -> None:
    """Point each versioned dataset of ``names`` at the one version this run used (the one it
    saved, else the one it loaded). kedro-mlflow logs a dataset's folder as the model's artifact:
    for a versioned entry that is every version ever saved, and the model would load the
    newest of them."""
    for name in names:
        dataset = catalog.get(name)
        if not isinstance(dataset, AbstractVersionedDataset) or dataset._version is None:
            continue
        path = saved_path(catalog, name) or Path(dataset._get_load_path())
        pinned = copy.copy(dataset)
        pinned._version, pinned._filepath = None, PurePosixPath(path)
        catalog[name] = pinned


class TrackingHook:
    """kedro-mlflow's hook when ``params:tracking.enabled``, plus what it cannot know: the
    stages' nested runs, per-epoch metrics, test scores and artifacts (see the module doc)."""

    def __init__(self) -> None:
        self._mlflow_hook = None  # kedro-mlflow's MlflowHook, when tracking this session
        self._checkpoints = True
        self._catalog = None
        self._stage_runs: dict[str, str] = {}  # stage (namespace) -> its nested MLflow run

    @hook_impl
    def after_context_created(self, context) -> None:
        self._mlflow_hook = None
        settings = dict(context.params.get("tracking") or {})
        for key, value in settings.items():
            if key not in ("enabled", "checkpoints") or not isinstance(value, bool):
                raise ValueError(
                    f"params:tracking.{key}: expected one of enabled, checkpoints set to true or "
                    f"false, got {value!r} (conf/base/parameters_tracking.yml)"
                )
        if not settings.get("enabled", False):
            return
        try:
            from kedro_mlflow.framework.hooks import MlflowHook
        except ImportError:
            logger.info("tracking.enabled, but kedro-mlflow is not installed: nothing tracked")
            return
        self._checkpoints = bool(settings.get("checkpoints", True))
        self._mlflow_hook = MlflowHook()
        self._mlflow_hook.after_context_created(context)

    @hook_impl
    def after_catalog_created(
        self, catalog, conf_catalog, conf_creds, parameters, save_version, load_versions
    ):
        if self._mlflow_hook is not None:
            self._mlflow_hook.after_catalog_created(
                catalog=catalog,
                conf_catalog=conf_catalog,
                conf_creds=conf_creds,
                parameters=parameters,
                save_version=save_version,
                load_versions=load_versions,
            )

    # Last of all hooks: a run another hook refuses (the run lock, a missing --load-versions)
    # raises before Kedro's try block, so on_pipeline_error would never close its MLflow run.
    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if self._mlflow_hook is None:
            return
        import mlflow

        run_id = run_params["run_id"]
        config = self._mlflow_hook.mlflow_config
        parent = self._parent_run(config, run_id)
        if parent is not None:  # another step of the same orchestrated run
            config.tracking.run.id = parent
        self._catalog, self._stage_runs = catalog, {}
        self._mlflow_hook.before_pipeline_run(run_params, pipeline, catalog)
        if not self._mlflow_hook._is_mlflow_enabled:
            return
        mlflow.set_tags({RUN_ID_TAG: run_id, "efm_seg.env": str(run_params.get("env"))})
        if parent is None:
            mlflow.set_tag("mlflow.runName", f"efm-seg {run_id}")
        logger.info(
            "Tracking run %s in MLflow run %s (%s)",
            run_id,
            mlflow.active_run().info.run_id,
            mlflow.get_tracking_uri(),
        )

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async) -> None:
        if self._mlflow_hook is None:
            return
        # Kedro hands validated parameter blocks to nodes as pydantic models; kedro-mlflow
        # flattens mappings only (it would log one "root={...}" string per block).
        plain = {
            name: as_mapping(value) if isinstance(value, BaseModel) else value
            for name, value in inputs.items()
            if name.startswith("params:") or name == "parameters"
        }
        self._mlflow_hook.before_node_run(node, catalog, plain, is_async)

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs) -> None:
        if self._mlflow_hook is None or not self._mlflow_hook._is_mlflow_enabled:
            return
        if TRAINING_TAG in node.tags and node.namespace:
            self._stage_runs[node.namespace] = self._log_stage(node.namespace, outputs)
        elif node.namespace == "evaluation" and "evaluation_metrics" in outputs:
            self._log_test_scores(outputs["evaluation_metrics"])

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node) -> None:
        # Files are logged once saved: Kedro saves a node's outputs after after_node_run.
        if self._mlflow_hook is None or not self._mlflow_hook._is_mlflow_enabled:
            return
        stage = node.namespace
        if dataset_name == f"{stage}.best_checkpoint" and stage in self._stage_runs:
            if self._checkpoints and not stage.startswith("study."):
                self._log_file(dataset_name, "checkpoint", run_id=self._stage_runs[stage])
        elif stage == "reporting":
            self._log_file(dataset_name, "reporting")

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if self._mlflow_hook is not None:
            inference = getattr(pipeline, "inference", None)  # a PipelineML's: an MLflow model
            if inference is not None and self._mlflow_hook._is_mlflow_enabled:
                _pin_versions(catalog, inference.inputs())
            self._mlflow_hook.after_pipeline_run(run_params, pipeline, catalog)
            self._close_runs("FINISHED")

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        if self._mlflow_hook is not None:
            self._mlflow_hook.on_pipeline_error(error, run_params, pipeline, catalog)
            self._close_runs("FAILED")

    def _close_runs(self, status: str) -> None:
        # kedro-mlflow reopens the run before every node (for threaded runners); MLflow 3
        # stacks the same run again each time, and its one end_run() leaves it active, so the
        # next session (an orchestrated run's next step, a notebook) would log into it.
        import mlflow

        if self._mlflow_hook._already_active_mlflow:  # opened by the caller: the caller's to end
            return
        while mlflow.active_run() is not None:
            mlflow.end_run(status)

    # What kedro-mlflow does not log.

    def _parent_run(self, config, run_id: str) -> str | None:
        import mlflow

        if self._mlflow_hook._already_active_mlflow:  # the caller's run: kedro-mlflow logs there
            return None
        experiment = mlflow.get_experiment_by_name(config.tracking.experiment.name)
        if experiment is None:
            return None
        runs = mlflow.MlflowClient().search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _log_stage(self, stage: str, outputs: Mapping[str, Any]) -> str:
        """The stage's nested run (recipe, per-epoch history, best scores); its run id."""
        import mlflow

        record = outputs.get(f"{stage}.training_record") or {}
        history = outputs.get(f"{stage}.history")
        checkpoint = outputs.get(f"{stage}.best_checkpoint") or {}
        with mlflow.start_run(run_name=stage, nested=True, tags={STAGE_TAG: stage}) as run:
            recipe = flatten(record.get("config") or checkpoint.get("config") or {})
            for start in range(0, len(recipe), 100):  # MLflow takes at most 100 per call
                batch = dict(list(recipe.items())[start : start + 100])
                mlflow.log_params({k: _param(v) for k, v in batch.items()})
            if history is not None:
                for epoch, values in epoch_metrics(history):
                    mlflow.log_metrics(values, step=epoch)
            best = {
                f"best_{k}": float(v)
                for k, v in (checkpoint.get("metrics") or {}).items()
                if isinstance(v, int | float)
            }
            if best:
                mlflow.log_metrics(best)
        return run.info.run_id

    def _log_test_scores(self, metrics) -> None:
        import mlflow

        scores = {}
        for row in metrics.to_dict("records"):
            suffix = "_tta" if bool(row.get("tta")) else ""
            for name in TEST_SCORES:
                value = row.get(name)
                if isinstance(value, int | float) and math.isfinite(value):
                    scores[f"{row['stage']}.test_{name}{suffix}"] = float(value)
        mlflow.log_metrics(scores)

    def _log_file(self, name: str, folder: str, run_id: str | None = None) -> None:
        """Log the file (or folder) just saved as the catalog's ``name``, into ``run_id`` (default:
        the parent run)."""
        import mlflow

        path = saved_path(self._catalog, name)
        if path is None:
            return
        client = mlflow.MlflowClient()
        run_id = run_id or mlflow.active_run().info.run_id
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=f"{folder}/{path.name}")
        else:
            client.log_artifact(run_id, str(path), artifact_path=folder)


def _param(value: Any) -> Any:
    # MLflow parameters are strings of at most 6000 characters.
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
