"""The study pipeline end to end on the tiny demo: the grid reaches the trainer, the baselines
and variants are wired as configured, the comparison is computed from the cells, and a killed
study continues where it stopped (and refuses cells of another configuration)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from efm_seg.study.cells import SUMMARY_LAYOUT, StaleCellError
from efm_seg.training import stage as study_nodes  # the study nodes train through it
from tests.conftest import kedro_run, latest_version, saved_versions

GRID = {
    "architectures": ["FPN", "PSPNet"],
    "seeds": [1, 2],
    "epochs": {"baseline": 1, "efm": 2, "finetune": 1},
    "overrides": {"efm": {"efm": {"start_epoch": 2, "every": 1}}},
    "variants": {
        "tuned": {
            "efm_method": {"loss": {"gamma": 0.0, "topk_ratio": 0.5}},
            "training": {"efm": {"source": "online"}},
            "finetune": {"optimizer": {"lr": 3.0e-4}},
        },
        "from_baseline": {"efm": {"init_from": "previous"}},
    },
}
CELLS = [
    f"{arch}/split/seed{seed}/{run}"
    for arch in ("FPN", "PSPNet")
    for seed in (1, 2)
    for run in (
        "baseline/baseline",
        "baseline_equal/baseline",
        "tuned/efm",
        "tuned/finetune",
        "from_baseline/efm",
        "from_baseline/finetune",
    )
]


def write_grid(project: Path, grid: dict) -> None:
    (project / "conf/local/parameters_study.yml").write_text(yaml.safe_dump({"study": grid}))


def checkpoint(project: Path, cell: str) -> dict:
    path = latest_version(project, f"data/local/06_models/study/{cell}/best_checkpoint.pt")
    return torch.load(path, weights_only=True)


def study_output(project: Path, name: str) -> Path:
    return latest_version(project, f"data/local/08_reporting/study/{name}")


@pytest.fixture(scope="module")
def study_run(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the demo project after one ``kedro run --pipelines study`` with :data:`GRID`."""
    project = tmp_path_factory.mktemp("study") / "project"
    shutil.copytree(demo_run, project)
    write_grid(project, GRID)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        kedro_run(project, ["study"])
    yield project
    shutil.rmtree(project.parent, ignore_errors=True)  # two dozen checkpoints: free the disk


def test_every_cell_trains_its_own_architecture_seed_and_recipe(study_run: Path):
    for cell in CELLS:
        arch, _, seed, run, stage = cell.split("/")
        saved = checkpoint(study_run, cell)
        config = saved["config"]
        assert (saved["model_spec"]["arch"], config["seed"]) == (arch, int(seed[4:])), cell
        epochs = {"baseline_equal": 4}.get(run, GRID["epochs"][stage])
        assert config["epochs"] == epochs, cell
        if run == "tuned":  # the variant's method and schedule, in both of its stages
            assert (config["loss"]["gamma"], config["loss"]["topk_ratio"]) == (0.0, 0.5)
            assert config["efm"]["source"] == "online" and config["efm"]["enabled"]
        elif stage != "baseline":  # the configured method (conf/local of the demo run)
            assert config["loss"]["gamma"] == 0.9 and config["loss"]["topk_ratio"] == 0.5
        if stage == "efm":
            assert config["efm"]["start_epoch"] == 2  # study.overrides
        if stage == "finetune":
            assert config["lr"] == (3.0e-4 if run == "tuned" else 5.0e-4), cell  # conf/local


def test_efm_stages_start_fresh_or_from_the_seed_baseline_as_configured(study_run: Path):
    for arch in ("FPN", "PSPNet"):
        for seed in (1, 2):
            base = checkpoint(study_run, f"{arch}/split/seed{seed}/baseline/baseline")
            warm = checkpoint(study_run, f"{arch}/split/seed{seed}/from_baseline/efm")
            fresh = checkpoint(study_run, f"{arch}/split/seed{seed}/tuned/efm")
            assert warm["lineage"]["init"]["run_id"] == base["lineage"]["run_id"]
            assert fresh["lineage"]["init"] is None
            tuned_efm = checkpoint(study_run, f"{arch}/split/seed{seed}/tuned/efm")
            tuned_ft = checkpoint(study_run, f"{arch}/split/seed{seed}/tuned/finetune")
            assert tuned_ft["lineage"]["init"]["stage"] == tuned_efm["lineage"]["stage"]
    one = checkpoint(study_run, "FPN/split/seed1/baseline/baseline")["state_dict"]
    two = checkpoint(study_run, "FPN/split/seed2/baseline/baseline")["state_dict"]
    assert any(not torch.equal(one[k], two[k]) for k in one)  # seeds differ


def test_the_comparison_is_computed_from_the_cells(study_run: Path):
    per_seed = pd.read_csv(study_output(study_run, "per_seed.csv"))
    assert len(per_seed) == len(CELLS)
    for cell in CELLS:  # the TTA row of each cell's own scores
        arch, _, seed, run, stage = cell.split("/")
        scores = pd.read_csv(
            latest_version(study_run, f"data/local/07_model_output/study/{cell}/scores.csv")
        )
        row = per_seed[
            (per_seed["arch"] == arch)
            & (per_seed["seed"] == int(seed[4:]))
            & (per_seed["run"] == run)
            & (per_seed["stage"] == stage)
        ]
        assert row["miou"].item() == pytest.approx(scores.loc[scores["tta"], "miou"].item())
    paired = pd.read_csv(study_output(study_run, "paired.csv"))
    got = paired[
        (paired["arch"] == "PSPNet")
        & (paired["run"] == "tuned")
        & (paired["stage"] == "finetune")
        & (paired["metric"] == "boundary_iou")
    ].iloc[0]
    psp = per_seed[per_seed["arch"] == "PSPNet"].set_index(["run", "stage", "seed"])
    diffs = [
        psp.loc[("tuned", "finetune", s), "boundary_iou"]
        - psp.loc[("baseline_equal", "baseline", s), "boundary_iou"]
        for s in (1, 2)
    ]
    assert got["difference"] == pytest.approx(np.mean(diffs))
    assert got["seeds"] == 2 and got["ci_low"] <= got["difference"] <= got["ci_high"]
    assert "baseline_equal" not in set(paired["run"])
    summary = pd.read_csv(study_output(study_run, "summary.csv"))
    assert len(summary) == len(CELLS) // 2 and set(summary["seeds"]) == {2}
    tables = study_output(study_run, "tables.md").read_text()
    for label in ("## FPN", "## PSPNet", "baseline, equal budget", "tuned (after fine-tuning)"):
        assert label in tables
    assert study_output(study_run, "ablation.png").stat().st_size > 10_000


def test_the_summary_records_the_cells_it_was_computed_from(study_run: Path):
    made_from = json.loads((study_run / "data/local/08_reporting/study/cells.json").read_text())
    assert sorted(made_from["cells"]) == sorted("study." + c.replace("/", ".") for c in CELLS)
    for cell in CELLS:
        run_id = checkpoint(study_run, cell)["lineage"]["run_id"]
        assert made_from["cells"]["study." + cell.replace("/", ".")] == run_id, cell


def test_a_study_continued_with_another_grid_summarizes_that_grid(
    study_run: Path, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    shutil.copytree(study_run, project)
    monkeypatch.chdir(project)
    versions = saved_versions(project, "08_reporting/study/per_seed.csv")

    def continue_study() -> None:
        bootstrap_project(project)
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_names=["study"], only_missing_outputs=True)

    continue_study()  # nothing changed: nothing runs, not even the summary
    assert saved_versions(project, "08_reporting/study/per_seed.csv") == versions
    # One variant and one seed fewer: no cell to train, but the summary must follow the grid.
    write_grid(
        project,
        GRID | {"seeds": [2], "variants": {"tuned": GRID["variants"]["tuned"]}},
    )
    continue_study()
    assert len(saved_versions(project, "08_reporting/study/per_seed.csv")) == len(versions) + 1
    per_seed = pd.read_csv(study_output(project, "per_seed.csv"))
    assert set(per_seed["run"]) == {"baseline", "baseline_equal", "tuned"}
    assert set(per_seed["seed"]) == {2} and len(per_seed) == 2 * 4
    made_from = json.loads((project / "data/local/08_reporting/study/cells.json").read_text())
    assert len(made_from["cells"]) == 2 * 4
    # The same cells at another confidence level: the summary is computed again at that level.
    write_grid(
        project,
        GRID | {"seeds": [2], "variants": {"tuned": GRID["variants"]["tuned"]}, "confidence": 0.8},
    )
    continue_study()
    assert len(saved_versions(project, "08_reporting/study/per_seed.csv")) == len(versions) + 2
    assert set(pd.read_csv(study_output(project, "paired.csv"))["confidence"]) == {0.8}
    # A summary written by an older efm-seg (its tables and figure laid out otherwise): written
    # again in this version's layout.
    record = project / "data/local/08_reporting/study/cells.json"
    made_from = json.loads(record.read_text())
    made_from["settings"]["layout"] = 1
    record.write_text(json.dumps(made_from))
    continue_study()
    assert len(saved_versions(project, "08_reporting/study/per_seed.csv")) == len(versions) + 3
    assert json.loads(record.read_text())["settings"]["layout"] == SUMMARY_LAYOUT
    # Extra seeds for the reference alone: only its new cells train, its convergence is judged
    # again over every seed it trained, and the other runs keep their pairs.
    trained = saved_versions(
        project, "06_models/study/FPN/split/seed2/tuned/finetune/best_checkpoint.pt"
    )
    write_grid(
        project,
        GRID | {"seeds": [2], "variants": {"tuned": GRID["variants"]["tuned"]}, "confidence": 0.8,
                "extra_seeds": {"seeds": [5], "runs": ["baseline_equal"]}},
    )  # fmt: skip
    continue_study()
    assert (
        saved_versions(project, "06_models/study/FPN/split/seed2/tuned/finetune/best_checkpoint.pt")
        == trained
    )
    assert not (project / "data/local/06_models/study/FPN/split/seed5/tuned").exists()
    assert checkpoint(project, "PSPNet/split/seed5/baseline_equal/baseline")["config"]["seed"] == 5
    per_seed = pd.read_csv(study_output(project, "per_seed.csv"))
    assert set(per_seed.loc[per_seed["seed"] == 5, "run"]) == {"baseline_equal"}
    assert len(per_seed) == 2 * 4 + 2
    assert set(pd.read_csv(study_output(project, "paired.csv"))["seeds"]) == {1}
    convergence = pd.read_csv(study_output(project, "convergence.csv"))
    assert sorted(set(convergence["seed"])) == [2, 5] and len(convergence) == 4
    assert (
        "seeds [2] (and 5 for `baseline_equal`)" in study_output(project, "tables.md").read_text()
    )


def test_the_pipeline_is_the_grid_of_the_session(study_run: Path, monkeypatch):
    monkeypatch.chdir(study_run)
    bootstrap_project(study_run)
    runtime = {"study": {"architectures": ["PSPNet"], "seeds": [9]}}
    with KedroSession.create(project_path=study_run, runtime_params=runtime) as session:
        session.load_context()
        names = {node.name for node in pipelines["study"].nodes}
    assert "study.PSPNet.split.seed9.tuned.finetune.train" in names
    assert not any(".FPN." in name or ".seed1." in name for name in names)
    assert len(names) == 6 * 2 + 2  # six cells (train + evaluate), convergence, summary


def test_a_killed_study_continues_where_it_stopped(study_run: Path, tmp_path, monkeypatch, caplog):
    project = tmp_path / "project"
    shutil.copytree(study_run, project)
    monkeypatch.chdir(project)
    summaries = saved_versions(project, "08_reporting/study/per_seed.csv")
    # Killed during FPN/split/seed1/from_baseline/efm: neither it nor its fine-tuning finished; and
    # PSPNet/split/seed2/tuned/finetune never started.
    unfinished = (
        "FPN/split/seed1/from_baseline/efm",
        "FPN/split/seed1/from_baseline/finetune",
        "PSPNet/split/seed2/tuned/finetune",
    )
    outputs = project / "data/local/07_model_output/study"
    orphan = "FPN/split/seed1/from_baseline/finetune"
    shutil.copytree(outputs / orphan, tmp_path / "orphan")
    for cell in unfinished:
        shutil.rmtree(project / f"data/local/06_models/study/{cell}")
        shutil.rmtree(outputs / cell)
    kept = checkpoint(project, "FPN/split/seed2/tuned/finetune")["lineage"]["run_id"]

    def run(**options):
        bootstrap_project(project)
        with KedroSession.create(project_path=project) as session:
            return session.run(pipeline_names=["study"], only_missing_outputs=True, **options)

    trained = []
    original = study_nodes.train_stage
    monkeypatch.setattr(
        study_nodes,
        "train_stage",
        lambda name, *args: trained.append(name) or original(name, *args),
    )
    # Scores kept for a fine-tuning cell whose EFM stage is to be trained again: refused
    # before anything runs (it started from a checkpoint the study no longer has).
    shutil.copytree(tmp_path / "orphan", outputs / orphan)
    with pytest.raises(StaleCellError, match=r"from_baseline.finetune: started from run \S+ of"):
        run()
    assert trained == []
    shutil.rmtree(outputs / orphan)
    with caplog.at_level(logging.INFO, logger="efm_seg.framework.hooks.study_grid"):
        run()
    # Before it starts, the run says what it will train: three cells of 2 + 1 + 1 epochs, at
    # the pace of the 21 cells already trained.
    assert re.search(
        r"study: 3 of 24 cells to train \(4 epochs\): about \d+ s at [\d.]+ s per epoch "
        r"\(the median of 21 finished cell\(s\); training only\)",
        caplog.text,
    ), caplog.text
    # Only the missing cells, and what depends on them, ran again.
    assert sorted(trained) == [
        "study.FPN.split.seed1.from_baseline.efm",
        "study.FPN.split.seed1.from_baseline.finetune",
        "study.PSPNet.split.seed2.tuned.finetune",
    ]
    assert checkpoint(project, "FPN/split/seed2/tuned/finetune")["lineage"]["run_id"] == kept
    # The summary existed already; it is computed again from the new cells all the same.
    assert len(saved_versions(project, "08_reporting/study/per_seed.csv")) == len(summaries) + 1
    assert len(pd.read_csv(study_output(project, "per_seed.csv"))) == len(CELLS)
    made_from = json.loads((project / "data/local/08_reporting/study/cells.json").read_text())
    for cell in unfinished:
        retrained = checkpoint(project, cell)["lineage"]["run_id"]
        assert made_from["cells"]["study." + cell.replace("/", ".")] == retrained

    # A changed variant: the cells kept from before no longer belong to this study.
    write_grid(
        project,
        GRID | {"variants": GRID["variants"] | {"tuned": {"efm_method": {"loss": {"gamma": 2}}}}},
    )
    trained.clear()
    with pytest.raises(
        StaleCellError, match=r"study.FPN.split.seed1.tuned.efm: trained .* another"
    ):
        run()
    assert trained == []


def test_a_study_continues_on_a_new_machine_from_its_committed_cells(study_run: Path, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    """The evidence study's snapshot and restore (docs/study/2026-12-06-evidence): the finished
    cells' scores and histories are all a new machine gets; it trains only what they cannot
    replace, and the summary is computed from both."""
    import importlib.util

    from efm_seg.parameters import StudyParams

    def script(name: str):
        path = Path(__file__).resolve().parents[2] / f"docs/study/2026-12-06-evidence/{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    project = tmp_path / "project"
    shutil.copytree(study_run, project)
    monkeypatch.chdir(project)
    data = project / "data/local"
    runs = {cell: checkpoint(project, cell)["lineage"]["run_id"] for cell in CELLS}
    script("snapshot").main(data, tmp_path)
    lost = "FPN/split/seed2/from_baseline/finetune"  # under way when the machine was lost
    shutil.rmtree(tmp_path / "cells" / lost)
    for folder in ("06_models/study", "07_model_output/study", "08_reporting/study"):
        shutil.rmtree(data / folder)  # a new machine: only the prepared data

    # As run_grid.sh does it: restore, then one cell per run, each scored as soon as it has
    # trained (--only-missing-outputs: a scoring node runs only where scores are missing), then
    # the convergence check and the summary by name.
    study = StudyParams.model_validate(GRID)
    script("restore").main(data, study, tmp_path / "cells")
    runs_in_grid = list(dict.fromkeys(cell.split("/")[3] for cell in CELLS))
    bootstrap_project(project)
    for cell in script("next_cells").to_train(data, study, runs_in_grid):
        with KedroSession.create(project_path=project) as session:
            session.run(
                pipeline_names=["study"],
                node_names=[f"{cell}.train", f"{cell}.evaluate"],
                only_missing_outputs=True,
            )
    with KedroSession.create(project_path=project) as session:
        session.run(
            pipeline_names=["study"],
            node_names=["study.check_convergence", "study.summarize"],
            only_missing_outputs=True,
        )

    # The lost fine-tuning, its EFM stage and the seed's baseline trained again (a restored
    # cell has no checkpoint to start from); nothing else did.
    retrained = {lost, "FPN/split/seed2/from_baseline/efm", "FPN/split/seed2/baseline/baseline"}
    trained = {c for c in CELLS if (data / "06_models/study" / c / "best_checkpoint.pt").exists()}
    assert trained == retrained
    made_from = json.loads((data / "08_reporting/study/cells.json").read_text())["cells"]
    for cell in CELLS:
        name = "study." + cell.replace("/", ".")
        assert (made_from[name] == runs[cell]) == (cell not in retrained), cell
    assert len(pd.read_csv(study_output(project, "per_seed.csv"))) == len(CELLS)
