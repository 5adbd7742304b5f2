"""A study over folds (leave one group out) with one-run variants, end to end on the tiny demo:
each fold's split is its patterns' groups in val and test and the rest in train, every cell
trains and is scored on its own fold, and runs are compared fold and seed by fold and seed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import kedro_run, latest_version, saved_versions

FOLDS = {
    "a": {"scene_000": "test", "scene_001": "val"},
    "b": {"scene_002": "test", "scene_003": "val"},
}
GRID = {
    "architectures": ["FPN"],
    "seeds": [1],
    "folds": FOLDS,
    "epochs": {"baseline": 1, "efm": 1, "finetune": 1},
    "variants": {
        "focal": {"single_run": True, "training": {"criterion": {"name": "focal"}}},
        "efm_one_run": {
            "single_run": True,
            "training": {"efm": {"enabled": True, "start_epoch": 2, "every": 1}},
        },
    },
}
RUNS = ("baseline", "baseline_equal", "focal", "efm_one_run")


@pytest.fixture(scope="module")
def folds_run(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tmp_path_factory.mktemp("folds") / "project"
    shutil.copytree(demo_run, project)
    (project / "conf/local/parameters_study.yml").write_text(yaml.safe_dump({"study": GRID}))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        kedro_run(project, ["study"])
    yield project
    shutil.rmtree(project.parent, ignore_errors=True)


def fold_split(project: Path, fold: str) -> pd.DataFrame:
    return pd.read_csv(
        latest_version(project, f"data/local/05_model_input/study/folds/{fold}/split.csv")
    )


def checkpoint(project: Path, fold: str, run: str) -> dict:
    path = f"data/local/06_models/study/FPN/{fold}/seed1/{run}/baseline/best_checkpoint.pt"
    return torch.load(latest_version(project, path), weights_only=True)


def test_each_fold_holds_out_its_groups_and_trains_on_the_rest(folds_run: Path):
    for fold, patterns in FOLDS.items():
        table = fold_split(folds_run, fold)
        held = {group: split for group, split in patterns.items()}
        for row in table.itertuples():
            assert row.split == held.get(row.group, "train"), (fold, row.group)
        assert set(table["split"]) == {"train", "val", "test"}


def test_every_cell_trains_on_its_fold_with_its_recipe(folds_run: Path):
    for fold in FOLDS:
        fingerprints = set()
        for run in RUNS:
            saved = checkpoint(folds_run, fold, run)
            fingerprints.add(saved["lineage"]["split"])
            config = saved["config"]
            assert config["epochs"] == (1 if run == "baseline" else 3), (fold, run)
            assert config["criterion"]["name"] == ("focal" if run == "focal" else "ce_dice")
            assert config["efm"]["enabled"] == (run == "efm_one_run")
        assert len(fingerprints) == 1  # one split per fold ...
    a, b = (checkpoint(folds_run, fold, "baseline")["lineage"]["split"] for fold in FOLDS)
    assert a != b  # ... and another for the other fold


def test_runs_are_compared_fold_and_seed_by_fold_and_seed(folds_run: Path):
    reporting = folds_run / "data/local/08_reporting/study"
    per_seed = pd.read_csv(latest_version(folds_run, "data/local/08_reporting/study/per_seed.csv"))
    assert set(per_seed["fold"]) == {"a", "b"} and len(per_seed) == len(RUNS) * 2
    paired = pd.read_csv(latest_version(folds_run, "data/local/08_reporting/study/paired.csv"))
    miou = paired[paired["metric"] == "miou"].set_index("run")
    assert set(miou.index) == {"baseline", "focal", "efm_one_run"}
    assert (miou["seeds"] == 2).all()  # two pairs: fold a and fold b, seed 1
    for run in ("focal", "efm_one_run"):
        rows = per_seed[per_seed["stage"] == "baseline"].set_index(["run", "fold"])["miou"]
        expected = (rows[run] - rows["baseline_equal"]).mean()
        assert miou.loc[run, "difference"] == pytest.approx(expected)
    tables = latest_version(folds_run, "data/local/08_reporting/study/tables.md").read_text()
    assert "folds a, b" in tables and "paired by fold and seed" in tables
    assert "focal (one run)" in tables and "### Power" in tables
    assert "### mIoU per seed, fold b" in tables
    assert reporting.is_dir()


def test_the_reference_runs_convergence_is_judged_from_their_histories(folds_run: Path):
    table = pd.read_csv(
        latest_version(folds_run, "data/local/08_reporting/study/convergence.csv")
    ).set_index("fold")
    assert sorted(table.index) == ["a", "b"] and set(table["seed"]) == {1}
    for fold in FOLDS:
        path = f"data/local/07_model_output/study/FPN/{fold}/seed1/baseline_equal/baseline"
        history = pd.read_csv(latest_version(folds_run, f"{path}/history.csv"))
        val_iou = history.set_index("epoch")["val_iou"]
        assert table.loc[fold, "epochs"] == 3 and table.loc[fold, "from_epoch"] == 2
        assert table.loc[fold, "gain"] == pytest.approx(val_iou[3] - val_iou[2])
        assert table.loc[fold, "fold_fails"] == (val_iou[3] - val_iou[2] >= 0.005)
    tables = latest_version(folds_run, "data/local/08_reporting/study/tables.md").read_text()
    assert "### Has the reference converged?" in tables


def test_the_differences_are_also_given_fold_by_fold(folds_run: Path):
    reporting = "data/local/08_reporting/study"
    per_seed = pd.read_csv(latest_version(folds_run, f"{reporting}/per_seed.csv"))
    per_fold = pd.read_csv(latest_version(folds_run, f"{reporting}/per_fold.csv"))
    miou = per_seed.set_index(["run", "stage", "fold"])["miou"]
    for row in per_fold[per_fold["metric"] == "miou"].itertuples():
        reference = miou[("baseline_equal", "baseline", row.fold)]
        assert row.difference == pytest.approx(miou[(row.run, row.stage, row.fold)] - reference)
    assert len(per_fold[per_fold["metric"] == "miou"]) == 3 * 2  # three runs, two folds
    tables = latest_version(folds_run, f"{reporting}/tables.md").read_text()
    assert "### mIoU difference per fold (mean over its seeds)" in tables


def test_part_of_the_grid_trains_first_by_its_tag(demo_run: Path, tmp_path, monkeypatch):
    """``kedro run --pipelines study --tags study.run.focal``: that run's cells on every fold
    (and the folds' splits), nothing else, and no summary of a grid not yet trained."""
    project = tmp_path / "project"
    shutil.copytree(demo_run, project)
    (project / "conf/local/parameters_study.yml").write_text(yaml.safe_dump({"study": GRID}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=["study"], tags=["study.run.focal"])
    models = project / "data/local/06_models/study/FPN"
    trained = sorted(str(p.relative_to(models)) for p in models.glob("*/seed1/*/*"))
    assert trained == ["a/seed1/focal/baseline", "b/seed1/focal/baseline"]
    assert not (project / "data/local/08_reporting/study").exists()


def test_the_references_convergence_is_judged_before_the_rest_trains(
    demo_run: Path, tmp_path, monkeypatch
):
    """``--tags study.run.baseline_equal``: the reference runs alone, and the verdict on their
    convergence; trained again, a reference run's verdict is judged again."""
    project = tmp_path / "project"
    shutil.copytree(demo_run, project)
    (project / "conf/local/parameters_study.yml").write_text(yaml.safe_dump({"study": GRID}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("DO_NOT_TRACK", "1")

    def run() -> None:
        bootstrap_project(project)
        with KedroSession.create(project_path=project) as session:
            session.run(
                pipeline_names=["study"], tags=["study.run.baseline_equal"],
                only_missing_outputs=True,
            )  # fmt: skip

    run()
    models = project / "data/local/06_models/study/FPN"
    trained = sorted(str(p.relative_to(models)) for p in models.glob("*/seed1/*"))
    assert trained == ["a/seed1/baseline_equal", "b/seed1/baseline_equal"]
    reporting = project / "data/local/08_reporting/study"
    assert sorted(p.name for p in reporting.iterdir()) == [
        "convergence.csv",
        "convergence.png",
        "convergence_runs.json",
    ]  # fmt: skip: no summary of a grid not yet trained
    figure = latest_version(project, "data/local/08_reporting/study/convergence.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((reporting / "convergence_runs.json").read_text())
    cell = "study.FPN.a.seed1.baseline_equal.baseline"
    history = "data/local/07_model_output/study/FPN/a/seed1/baseline_equal/baseline/history.csv"
    assert record["runs"][cell] == pd.read_csv(latest_version(project, history))["run_id"].iloc[-1]

    run()  # nothing to do: the verdict stands
    assert len(saved_versions(project, "08_reporting/study/convergence.csv")) == 1
    for folder in ("06_models", "07_model_output"):  # fold a's reference, trained again
        shutil.rmtree(project / f"data/local/{folder}/study/FPN/a/seed1/baseline_equal")
    run()
    assert len(saved_versions(project, "08_reporting/study/convergence.csv")) == 2
    again = json.loads((reporting / "convergence_runs.json").read_text())
    assert again["runs"][cell] != record["runs"][cell]
    assert (
        again["runs"]["study.FPN.b.seed1.baseline_equal.baseline"]
        == (record["runs"]["study.FPN.b.seed1.baseline_equal.baseline"])
    )
