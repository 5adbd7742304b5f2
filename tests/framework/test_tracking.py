"""MLflow tracking (efm_seg.framework.hooks.tracking, kedro-mlflow): what a run records, read back
through the
MLflow client; one parent run per Kedro run and per orchestrated run; the switch."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from efm_seg.framework.deployment import run_step
from efm_seg.framework.hooks.tracking import epoch_metrics, flatten
from tests.conftest import DEMO_EFM_METHOD, kedro_run, latest_version

STAGES = ("baseline", "efm", "finetune", "baseline_equal")  # every model a run trains


def client_of(project) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def runs_of(project, experiment="efm-seg-local"):
    client = client_of(project)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client, client.search_runs([found.experiment_id])


def test_flatten_and_epoch_metrics():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": {}}) == {"a.b": 1, "a.c.d": "x", "e": {}}
    history = pd.DataFrame(
        {"epoch": [1, 2], "val_iou": [0.1, 0.2], "efm_active": [False, True], "run_id": ["r", "r"]}
    )
    assert epoch_metrics(history) == [(1, {"val_iou": 0.1}), (2, {"val_iou": 0.2})]


def test_a_run_is_one_parent_run_with_a_nested_run_per_stage(demo_run):
    client, runs = runs_of(demo_run)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    # The Kedro run's id: the version of every output it saved.
    report = latest_version(demo_run, "data/local/08_reporting/report.html")
    assert parent.data.tags["efm_seg.run_id"] == report.parent.name
    # Every node's parameters, flattened; the demo's non-default EFM settings among them.
    loss = DEMO_EFM_METHOD["loss"]
    assert parent.data.params["efm_method.loss.alpha_f"] == str(loss["alpha_f"])
    assert parent.data.params["efm_method.map.sigma"] == str(DEMO_EFM_METHOD["map"]["sigma"])

    children = {
        r.data.tags["efm_seg.stage"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == set(STAGES)
    for stage in STAGES:
        child = children[stage]
        history = pd.read_csv(
            latest_version(demo_run, f"data/local/07_model_output/{stage}/history.csv")
        )
        logged = client.get_metric_history(child.info.run_id, "val_iou")
        assert [m.step for m in logged] == list(history["epoch"])
        assert [m.value for m in logged] == pytest.approx(list(history["val_iou"]))
        # The stage's effective recipe (the demo's EFM settings among it).
        assert child.data.params["loss.topk_ratio"] == str(loss["topk_ratio"])
        assert child.data.params["efm_map.alpha"] == str(DEMO_EFM_METHOD["map"]["alpha"])
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")]
        assert artifacts == ["checkpoint/best_checkpoint.pt"]

    # The test scores, per stage, as the evaluation table has them.
    scores = pd.read_csv(latest_version(demo_run, "data/local/08_reporting/evaluation_metrics.csv"))
    for row in scores.itertuples():
        name = f"{row.stage}.test_miou{'_tta' if row.tta else ''}"
        assert parent.data.metrics[name] == pytest.approx(row.miou)
    reporting = {a.path for a in client.list_artifacts(parent.info.run_id, "reporting")}
    assert {
        "reporting/report.html",
        "reporting/stage_table.csv",
        "reporting/tables.md",
    } <= reporting


def test_the_steps_of_an_orchestrated_run_share_one_parent_run(kedro_project):
    (kedro_project / "conf/local/parameters_tracking.yml").write_text(
        "tracking:\n  enabled: true\n  checkpoints: false\n"
    )
    version = "2026-03-01T10.00.00.000Z"
    for namespace in ("ingestion", "preprocessing"):
        run_step(namespaces=[namespace], version=version, project_path=kedro_project)
    _, runs = runs_of(kedro_project)
    assert len(runs) == 1
    (run,) = runs
    assert run.data.tags["efm_seg.run_id"] == version and run.info.status == "FINISHED"
    # Both steps' parameters, flattened: ingestion's and preprocessing's.
    assert run.data.params["ingestion.images"] == "images/{id}_sat.jpg"
    assert run.data.params["preprocessing.size"] == "64"
    # Another run id: another parent run.
    kedro_run(kedro_project, ["ingestion"])
    assert len(runs_of(kedro_project)[1]) == 2


def test_tracking_switched_off_writes_no_store(kedro_project):
    kedro_run(kedro_project, ["ingestion"])  # the tiny project's conf/local switches it off
    assert not (kedro_project / "mlflow.db").exists()
    kedro_run(kedro_project, ["ingestion"], **{"tracking.enabled": "true"})
    assert (kedro_project / "mlflow.db").exists()


def test_a_bad_tracking_setting_is_refused(kedro_project):
    with pytest.raises(ValueError, match=r"params:tracking.enabeld"):
        kedro_run(kedro_project, ["ingestion"], **{"tracking.enabeld": "true"})


def test_an_environment_points_tracking_at_another_store(kedro_project):
    """The tracking URI is configuration (an environment's mlflow.yml): here another SQLite
    file, as a team would name its server's URL."""
    (kedro_project / "conf/local/mlflow.yml").write_text(
        "server:\n  mlflow_tracking_uri: sqlite:///${abspath:tracking/team.db}\n"
    )
    kedro_run(kedro_project, ["ingestion"], **{"tracking.enabled": "true"})
    assert not (kedro_project / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{kedro_project / 'tracking/team.db'}")
    experiment = client.get_experiment_by_name("efm-seg-local")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["ingestion.images"] == "images/{id}_sat.jpg"


def test_a_run_refused_before_it_starts_leaves_no_mlflow_run_open(kedro_project):
    """Another hook refusing the run (here a missing --load-versions) must not leave an MLflow
    run active in the process: the next session would log into it."""
    import mlflow

    with pytest.raises(Exception, match="no such version"):
        kedro_run(
            kedro_project,
            ["split"],
            load_versions={"encoded_index": "2020-01-01T00.00.00.000Z"},
            **{"tracking.enabled": "true"},
        )
    assert mlflow.active_run() is None
