"""Lineage and provenance through real Kedro sessions (issue: one run, one truth).

Each test starts from a copy of the shared default run, then does what a user did: trains one
stage again, preprocesses again, picks versions by hand; evaluation and reporting must refuse
to compare what does not share one lineage, before writing anything, and name the versions.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

import pandas as pd
import pytest

from efm_seg.basics.lineage import LineageError
from tests.conftest import kedro_run as run
from tests.conftest import latest_version
from tests.conftest import saved_versions as versions

pytestmark = pytest.mark.slow


@pytest.fixture
def project(demo_copy: Path) -> Path:
    return demo_copy


def evaluation_outputs(project: Path) -> dict[str, list[str]]:
    names = [f"07_model_output/{s}/test_metrics.csv" for s in ("baseline", "efm", "finetune")]
    names += ["08_reporting/evaluation_metrics.csv"]
    return {name: versions(project, name) for name in names}


def provenance(project: Path) -> dict:
    return json.loads(
        latest_version(project, "data/local/08_reporting/provenance.json").read_text()
    )


def test_a_stage_trained_again_breaks_the_chain_until_versions_are_chosen(project):
    (first,) = versions(project, "06_models/efm/best_checkpoint.pt")
    run(project, ["efm"])  # the EFM stage again; the fine-tuning still descends from the first
    second = versions(project, "06_models/efm/best_checkpoint.pt")[-1]
    before = evaluation_outputs(project)

    with pytest.raises(
        LineageError,
        match=rf"finetune .* started from the efm checkpoint of run {first}, but the efm "
        rf"checkpoint compared is from run {second}.*--load-versions efm.best_checkpoint:{first}",
    ):
        run(project, ["evaluation"])
    assert evaluation_outputs(project) == before  # refused before any stage was scored

    # The explicit choice is honoured by evaluation; reporting then finds the EFM stage's
    # history, snapshots and record of the other run, and names the versions to read.
    chosen = {"efm.best_checkpoint": first}
    with pytest.raises(LineageError, match=rf"efm.history is from run {second}") as refused:
        run(project, ["evaluation", "reporting"], load_versions=chosen)
    for name in ("efm.history", "efm.efm_snapshots", "efm.training_record"):
        assert f"{name}:{first}" in str(refused.value)
    metrics = pd.read_csv(latest_version(project, "data/local/08_reporting/evaluation_metrics.csv"))
    assert metrics.loc[metrics["stage"] == "efm", "checkpoint_run"].unique().tolist() == [first]
    assert versions(project, "08_reporting/report.html") == versions(
        project, "08_reporting/stage_table.csv"
    )  # the refused report wrote nothing

    chosen = {f"efm.{name}": first for name in ("history", "efm_snapshots", "training_record")}
    run(project, ["reporting"], load_versions=chosen)
    record = provenance(project)
    assert record["report_run"]["load_versions"] == chosen
    assert record["report_run"]["inputs"]["efm.history"] == f"{first} (explicit)"
    assert record["report_run"]["inputs"]["baseline.history"].endswith("(latest)")
    assert record["stages"]["efm"]["training_run"] == first
    assert record["stages"]["finetune"]["started_from"] == f"efm checkpoint of run {first}"
    html = latest_version(project, "data/local/08_reporting/report.html").read_text()
    assert f"{first} (explicit)" in html


def test_data_preprocessed_again_refuses_the_old_checkpoints(project):
    before = evaluation_outputs(project)
    run(project, ["preprocessing"], **{"preprocessing.size": 96})
    with pytest.raises(
        LineageError,
        match=r"baseline: the checkpoint \(run .*\) was made from other data.*"
        r"sample store .*preprocessed again.*kedro run --pipelines baseline",
    ):
        run(project, ["evaluation"])
    assert evaluation_outputs(project) == before
    # Nor is the earlier evaluation reported: its figures would show the new store's images.
    with pytest.raises(LineageError, match=r"sample store .*, but the store is now"):
        run(project, ["reporting"])


def test_a_split_made_again_refuses_training_from_the_old_checkpoint(project):
    run(project, ["split"], **{"split.seed": 1})  # another assignment (seed 7 gives the same)
    with pytest.raises(LineageError, match=r"the efm checkpoint it starts from .* split"):
        run(project, ["finetune"])


def test_the_report_says_where_everything_comes_from(demo_run):
    record = provenance(demo_run)
    run_info = record["report_run"]
    (run_id,) = versions(demo_run, "08_reporting/report.html")
    assert run_info["run_id"] == run_id and run_info["env"] == "local"
    assert run_info["data_root"] == "data/local" and run_info["inputs"] == {}
    assert set(run_info["packages"]) >= {"torch", "segmentation-models-pytorch", "kedro", "efm-seg"}
    processor = run_info["machine"]["processor"]
    assert processor and run_info["machine"]["logical_cpus"] == os.cpu_count()
    for stage, epochs in (("baseline", 2), ("efm", 2), ("finetune", 1)):
        stage_record = record["stages"][stage]
        assert stage_record["training_run"] == stage_record["evaluation_run"] == run_id
        assert stage_record["device"] == stage_record["evaluation_device"] == "cpu"
        assert stage_record["precision"] == "fp32" and stage_record["epochs_run"] == epochs
        assert stage_record["train_seconds"] > 0 and stage_record["evaluation_seconds"] > 0
        assert stage_record["recipe"]["epochs"] == epochs  # the stage's own, not the shared 4
    assert record["stages"]["finetune"]["recipe"]["efm"]["source"] == "online"
    html = latest_version(demo_run, "data/local/08_reporting/report.html").read_text()
    for stage in ("baseline", "efm", "finetune"):  # each stage's training run's machine
        assert record["stages"][stage]["machine"] == run_info["machine"]
    for text in ("Provenance", run_id, "data/local", "auto → cpu", "Effective training recipe",
                 "Software and machine", escape(processor)):  # fmt: skip
        assert text in html, text
    markdown = latest_version(demo_run, "data/local/08_reporting/tables.md").read_text()
    assert "# Provenance" in markdown and run_id in markdown
