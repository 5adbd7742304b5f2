"""The shipped DAG (deploy/airflow/dags) in a real Airflow 3 (.venv-deploy, SQLite): one
`airflow dags test` runs every task of the default pipeline on the tiny demo, as one run."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.deploy.conftest import unpacked_conf

pytestmark = pytest.mark.slow

DAG = PROJECT_ROOT / "deploy/airflow/dags/efm_seg_dag.py"
MODELS = ("baseline", "efm", "finetune", "baseline_equal")
# Task ids are the namespaces, slugified (baseline_equal: baseline-equal).
TASKS = ("ingestion", "preprocessing", "split", "baseline", "efm", "finetune", "baseline-equal",
         "evaluation")  # fmt: skip
LOGICAL_DATE = "2026-02-01"
VERSION = "2026-02-01T00.00.00.000Z"  # efm_seg.framework.deployment.run_version of the logical date


def test_the_shipped_dag_runs_every_task_as_one_run(deploy_env, tmp_path):
    project = tmp_path / "project"
    conf = unpacked_conf(deploy_env, project)
    # Tracked in MLflow (the wheel's mlflow extra is installed on the "workers").
    (conf / "local" / "parameters_tracking.yml").write_text(
        "tracking:\n  enabled: true\n  checkpoints: true\n"
    )
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(DAG, home / "dags")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # What a worker is given (see the DAG's doc): where runs work, and their configuration.
        "EFM_SEG_PROJECT_PATH": str(project),
        "EFM_SEG_CONF_SOURCE": str(conf),
        # The project's plain one-line log records in the task logs.
        "KEDRO_LOGGING_CONFIG": str(conf / "logging.yml"),
    }
    migrated = deploy_env.run(["airflow", "db", "migrate"], cwd=tmp_path, timeout=300, **env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    # From another directory: the DAG, not the worker's working directory, finds the project.
    result = deploy_env.run(
        ["airflow", "dags", "test", "efm-seg", LOGICAL_DATE], cwd=tmp_path, timeout=1200, **env
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    finished = re.findall(r"DagRun Finished: dag_id=efm-seg.*?state=(\w+)", log)
    assert finished == ["success"], log[-5000:]
    for task in (*TASKS, "reporting"):
        assert re.search(rf"end task task_id={task}\b", log), f"task {task} did not run"
    assert "new_state=failed" not in log and "up_for_retry" not in log

    # One DAG run, one Kedro run: every versioned output has the run's version and no other.
    data = project / "data/local"
    versions = {p.name for p in data.glob("*/**/20*T*Z") if p.is_dir()}
    assert versions == {VERSION}
    assert (data / "08_reporting/report.html" / VERSION / "report.html").is_file()
    for stage in MODELS:
        record = data / "07_model_output" / stage / "training_record.json" / VERSION
        lineage = json.loads((record / "training_record.json").read_text())["lineage"]
        assert lineage["run_id"] == VERSION
    # Each task read what the earlier ones saved at the run's version, never "latest".
    assert "step efm of pipeline __default__: reading baseline.best_checkpoint, split" in log

    # One MLflow parent run for the DAG run, whatever task logged: parameters of the first
    # task, a nested run per training task, the last task's report.
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("efm-seg-local").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["efm_seg.run_id"] == VERSION and parent.info.status == "FINISHED"
    assert "ingestion.images" in parent.data.params and "finetune.test_miou" in parent.data.metrics
    children = {r.data.tags["efm_seg.stage"] for r in runs if r is not parent}
    assert children == set(MODELS)
    reporting = {a.path for a in client.list_artifacts(parent.info.run_id, "reporting")}
    assert "reporting/report.html" in reporting
