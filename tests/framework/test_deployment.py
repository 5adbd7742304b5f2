"""Orchestrated runs (efm_seg.framework.deployment): the steps of one run share its version and read
each
other's outputs at it; the shipped Airflow DAG is what its documented command generates."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

from efm_seg.basics.names import MODELS
from efm_seg.framework.deployment import check_version, pinned_load_versions, run_step, run_version
from tests.conftest import PROJECT_ROOT

V1 = "2026-03-01T10.00.00.000Z"
V2 = "2026-03-02T10.00.00.000Z"
KEDRO_ENV_VARS = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
SHIPPED_DAG = PROJECT_ROOT / "deploy/airflow/dags/efm_seg_dag.py"


def make_airflow_dag(project: Path, target: Path) -> None:
    """`make airflow-dag`'s command, run in ``project``, writing to ``target``."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "kedro"),
            "airflow",
            "create",
            "--group-by",
            "namespace",
            "--jinja-file",
            str(PROJECT_ROOT / "deploy/airflow/dag_template.j2"),
            "--target-dir",
            str(target),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=KEDRO_ENV_VARS,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_run_version_is_kedros_version_string_of_the_time():
    when = datetime(2026, 11, 25, 4, 10, 7, 123456, tzinfo=UTC)
    assert run_version(when) == "2026-11-25T04.10.07.123Z"
    # Another time zone is converted; a naive time is UTC.
    assert run_version(when.astimezone(timezone(timedelta(hours=4)))) == run_version(when)
    assert run_version(when.replace(tzinfo=None)) == run_version(when)
    assert check_version(run_version(when)) == "2026-11-25T04.10.07.123Z"
    for bad in ("2026-11-25", "latest", "../2026-11-25T04.10.07.123Z", "2026-11-25T04:10:07Z"):
        with pytest.raises(ValueError, match="not a Kedro version string"):
            check_version(bad)


def test_a_step_reads_the_versioned_outputs_of_its_run_that_other_steps_write(kedro_project):
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project) as session:
        catalog = session.load_context().catalog
        whole = pipelines["__default__"]

        def pinned(namespace):
            return pinned_load_versions(
                whole.only_nodes_with_namespaces([namespace]), whole, catalog, V1
            )

        # The store is not versioned (one per environment); raw data is no pipeline's output.
        assert pinned("ingestion") == {}
        assert pinned("preprocessing") == {"manifest": V1}
        assert pinned("split") == {"encoded_index": V1}
        assert pinned("efm") == {"baseline.best_checkpoint": V1, "split": V1}
        assert set(pinned("reporting")) == {
            "evaluation_metrics",
            "evaluation_per_class",
            *(f"{s}.{o}" for s in MODELS for o in REPORT_INPUTS),
        }


REPORT_INPUTS = ("training_record", "history", "efm_snapshots", "test_predictions")


def test_only_run_info_crosses_tasks_in_memory(kedro_project):
    """Every dataset one namespace (Airflow task) passes to another is persisted, except
    run_info, which every session fills itself."""
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project) as session:
        catalog = session.load_context().catalog
    whole = pipelines["__default__"]
    for group in whole.group_nodes_by("namespace"):
        assert group.type == "namespace", f"{group.name} is not in a namespace"
        step = whole.only_nodes_with_namespaces([group.name])
        for name in step.inputs() & (whole.all_outputs() - step.all_outputs()):
            dataset = catalog.get(name)
            assert dataset is not None and not isinstance(dataset, MemoryDataset), (
                f"{name} reaches {group.name} from another task but is not persisted"
            )
    assert "run_info" in whole.inputs()


def test_the_steps_of_a_run_share_its_version_and_ignore_later_outputs(kedro_project, caplog):
    for namespace in ("ingestion", "preprocessing"):
        run_step(namespaces=[namespace], version=V1, project_path=kedro_project)
    index = kedro_project / "data/local/05_model_input/encoded_index.csv"
    manifest = kedro_project / "data/local/02_intermediate/manifest.csv"
    assert [p.name for p in index.iterdir()] == [V1]
    assert [p.name for p in manifest.iterdir()] == [V1]
    # Another run saves a newer index (two samples fewer) before this run's split step.
    newer = index / V2 / index.name
    newer.parent.mkdir()
    pd.read_csv(index / V1 / index.name).iloc[2:].to_csv(newer, index=False)

    run_step(namespaces=["split"], version=V1, project_path=kedro_project)
    split_path = kedro_project / "data/local/05_model_input/split.csv"
    split = pd.read_csv(split_path / V1 / split_path.name)
    assert len(split) == len(pd.read_csv(index / V1 / index.name))  # V1's index, not V2's

    # The step again (an Airflow retry): what the first attempt saved is replaced.
    (split_path / V1 / split_path.name).write_text("sample_id,split\nleftover,train\n")
    with caplog.at_level(logging.WARNING, logger="efm_seg.framework.deployment"):
        run_step(namespaces=["split"], version=V1, project_path=kedro_project)
    assert "saved by an earlier attempt" in caplog.text
    assert pd.read_csv(split_path / V1 / split_path.name).equals(split)
    assert sorted(p.name for p in split_path.iterdir()) == [V1]


def test_a_bad_version_is_refused_before_anything_runs(kedro_project):
    with pytest.raises(ValueError, match="'yesterday' is not a Kedro version string"):
        run_step(namespaces=["ingestion"], version="yesterday", project_path=kedro_project)
    assert not (kedro_project / "data").exists()


def test_the_shipped_dag_is_what_make_airflow_dag_generates(tmp_path):
    """deploy/airflow/dags is generated (make airflow-dag); a change to the pipelines, the
    template or conf/base/airflow.yml without generating it again fails here."""
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    command = next(line for line in makefile.splitlines() if "kedro airflow create" in line)
    assert "--group-by namespace" in command and "deploy/airflow/dag_template.j2" in command
    make_airflow_dag(PROJECT_ROOT, tmp_path)
    generated = (tmp_path / SHIPPED_DAG.name).read_text()
    assert generated == SHIPPED_DAG.read_text(), "run `make airflow-dag` and commit the DAG"
    # One task per pipeline, each in the order of the data.
    tasks = [line.split('"')[1] for line in generated.splitlines() if "task_id=" in line]
    assert tasks == [
        "ingestion",
        "preprocessing",
        "split",
        "baseline",
        "baseline-equal",
        "efm",
        "finetune",
        "evaluation",
        "reporting",
    ]
    compile(generated, str(SHIPPED_DAG), "exec")


def test_gpu_tasks_go_to_the_configured_queue_and_pool(tmp_path):
    """conf/base/airflow.yml's gpu_queue and gpu_pool reach the training and evaluation tasks
    only (a project copy with the settings changed)."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    (project / "src").mkdir()
    (project / "conf/local").mkdir()
    settings = yaml.safe_load((PROJECT_ROOT / "conf/base/airflow.yml").read_text())
    settings["default"] |= {"gpu_queue": "gpu", "gpu_pool": "gpu_slots"}
    (project / "conf/local/airflow.yml").write_text(yaml.safe_dump(settings))
    make_airflow_dag(project, tmp_path / "dags")
    dag = (tmp_path / "dags" / SHIPPED_DAG.name).read_text()
    blocks = dag.split("@task(")[1:]
    queued = {b.split('"')[1] for b in blocks if 'queue="gpu"' in b and 'pool="gpu_slots"' in b}
    assert queued == {"baseline", "efm", "finetune", "baseline-equal", "evaluation"}
    compile(dag, "dag.py", "exec")
