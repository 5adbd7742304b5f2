"""Run information: git state, package versions, input versions, and the report's tables."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import pytest

from efm_seg.basics.lineage import LineageError, check_stages, digest, split_fingerprint
from efm_seg.basics.provenance import (
    describe_commit,
    git_state,
    machine_facts,
    package_versions,
    processor_name,
    run_id_of,
)
from efm_seg.reporting.provenance_tables import provenance_tables, recipe_table, software_table


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_names_the_commit_and_uncommitted_changes(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert git_state(tmp_path)["dirty"] is True
    assert describe_commit(git_state(tmp_path)).endswith("+ uncommitted changes")
    inner = tmp_path / "sub"
    inner.mkdir()
    assert git_state(inner) is None  # a folder inside another repository is not a checkout
    assert describe_commit(None).startswith("none")


def test_package_versions_cover_what_decides_a_result():
    versions = package_versions()
    for name in ("python", "efm-seg", "kedro", "torch", "segmentation-models-pytorch"):
        assert versions[name] and versions[name] != "not installed", name


def test_the_machine_is_named_by_its_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000\n\n")
    assert processor_name(cpuinfo) == "Test CPU 9000"
    # Elsewhere (no /proc, or no model name in it) the platform's name stands in.
    assert processor_name(tmp_path / "absent") == (
        platform.processor() or platform.machine() or "unknown"
    )
    cpuinfo.write_text("processor\t: 0\n")
    assert processor_name(cpuinfo) == processor_name(tmp_path / "absent")
    facts = machine_facts()
    assert facts["processor"] and facts["system"]
    assert 1 <= facts["logical_cpus"] <= os.cpu_count()


def test_the_software_table_shows_each_runs_machine_and_copes_with_runs_without_one():
    report = {"packages": {"torch": "2"}, "machine": {"processor": "A", "logical_cpus": 2}}
    stages = {"baseline": {"packages": {"torch": "1"}}}  # recorded before machines were
    table = software_table(report, stages).set_index("item")
    assert table.loc["torch"].tolist() == ["2", "1"]
    assert table.loc["processor"].tolist() == ["A", "–"]
    assert table.loc["logical CPUs", "this report"] == "2"
    assert table.loc["system", "this report"] == "–"


def test_a_node_without_a_run_id_is_told_where_it_comes_from():
    assert run_id_of({"run_id": "r"}) == "r"
    with pytest.raises(ValueError, match="RunInfoHook"):
        run_id_of(None)


def test_fingerprints():
    assert digest(["ab", "c"]) != digest(["a", "bc"])  # part boundaries count
    import pandas as pd

    table = pd.DataFrame({"sample_id": ["a", "b"], "split": ["train", "val"], "x": [1, 2]})
    assert split_fingerprint(table) == split_fingerprint(table.iloc[::-1].drop(columns="x"))
    assert split_fingerprint(table) != split_fingerprint(table.assign(split=["val", "train"]))


def test_stages_without_a_previous_stage_compared_are_not_chained():
    data = {"store": "s", "split": "p", "classes": "c"}
    # Fine-tuning alone, from an EFM checkpoint not compared here: nothing to check it against.
    check_stages({"finetune": {**data, "init_stage": "efm", "init_run": "e0"}}, "test")
    with pytest.raises(LineageError, match="different data"):
        check_stages({"baseline": data, "efm": {**data, "classes": "other"}}, "test")


def test_the_recipe_table_marks_what_the_stages_do_not_share():
    stages = {
        "baseline": {"device": "cpu", "precision": "fp32", "recipe": {
            "lr": 5e-4, "device": "auto", "precision": "auto", "efm": {"enabled": False}}},
        "efm": {"device": "cpu", "precision": "fp32", "recipe": {
            "lr": 5e-4, "device": "auto", "precision": "auto", "efm": {"enabled": True}}},
    }  # fmt: skip
    table = recipe_table(stages).set_index("setting")
    assert table.loc["efm.enabled", "differs"] == "•" and table.loc["lr", "differs"] == ""
    assert table.loc["device", "+EFM"] == "auto → cpu"
    headings = [heading for heading, _, _ in provenance_tables({"stages": stages})]
    assert headings[:2] == ["This report's run", "Stages compared"]
