"""The three training stages, evaluation and reporting, read from the shared default run."""

import pandas as pd
import pytest
import torch
from PIL import Image

from efm_seg.models import model_from_checkpoint
from efm_seg.pipelines.training import create_stage_pipeline
from tests.conftest import DEMO_EFM_METHOD, latest_version

STAGES = ("baseline", "efm", "finetune")


def test_stage_wiring():
    baseline = create_stage_pipeline("baseline")
    efm = create_stage_pipeline("efm", init_from="baseline.best_checkpoint")
    assert baseline.inputs() == {
        "encoded_samples", "split", "params:dataset", "params:efm_method", "params:training",
        "params:baseline.overrides", "run_info", "baseline.training_state",
    }  # fmt: skip
    assert "baseline.best_checkpoint" in efm.inputs()
    assert efm.outputs() == {
        "efm.best_checkpoint", "efm.history", "efm.efm_snapshots", "efm.training_record",
    }  # fmt: skip


def load_checkpoint(project, stage: str) -> dict:
    path = latest_version(project, f"data/local/06_models/{stage}/best_checkpoint.pt")
    return torch.load(path, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "epochs"), [("baseline", 2), ("efm", 2), ("finetune", 1), ("baseline_equal", 5)]
)
def test_each_stage_trains_its_own_recipe(demo_run, stage, epochs):
    history = pd.read_csv(
        latest_version(demo_run, f"data/local/07_model_output/{stage}/history.csv")
    )
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    checkpoint = load_checkpoint(demo_run, stage)
    assert checkpoint["stage"] == stage and checkpoint["classes"][0] == "bare_land"
    model_from_checkpoint(checkpoint)
    config = checkpoint["config"]
    assert config["batch_size"] == 4 and config["epochs"] == epochs
    # The project's efm_method parameters (non-default here) reach every stage's trainer.
    assert config["efm_map"] == DEMO_EFM_METHOD["map"]
    assert config["loss"] == DEMO_EFM_METHOD["loss"]
    expected = {
        "baseline": (False, "per_sample"),
        "efm": (True, "per_sample"),
        "baseline_equal": (False, "per_sample"),  # the baseline's recipe, the stages' epochs
    }
    assert (config["efm"]["enabled"], config["efm"]["source"]) == expected.get(
        stage, (True, "online")
    )
    assert config["init_from"] == ("previous" if stage == "finetune" else None)


@pytest.mark.slow
def test_efm_schedule_and_one_version_per_run(demo_run):
    efm = pd.read_csv(latest_version(demo_run, "data/local/07_model_output/efm/history.csv"))
    assert efm["efm_refreshed"].tolist() == [False, True]
    assert efm["efm_active"].tolist() == [False, True]
    finetune = pd.read_csv(
        latest_version(demo_run, "data/local/07_model_output/finetune/history.csv")
    )
    assert finetune["efm_active"].tolist() == [True]
    # One run, one version: the models' outputs share the session's timestamp.
    versions = {
        p.name
        for stage in (*STAGES, "baseline_equal")
        for p in (demo_run / f"data/local/06_models/{stage}/best_checkpoint.pt").iterdir()
    }
    assert len(versions) == 1


@pytest.mark.slow
def test_evaluation_and_report(demo_run):
    metrics = pd.read_csv(
        latest_version(demo_run, "data/local/08_reporting/evaluation_metrics.csv")
    )
    assert sorted(zip(metrics["stage"], metrics["tta"], strict=True)) == [
        (s, t) for s in ("baseline", "baseline_equal", "efm", "finetune") for t in (False, True)
    ]
    for stage in (*STAGES, "baseline_equal"):
        epoch = metrics.loc[metrics["stage"] == stage, "checkpoint_epoch"].unique().tolist()
        assert epoch == [load_checkpoint(demo_run, stage)["epoch"]]  # its own best checkpoint
    table = pd.read_csv(latest_version(demo_run, "data/local/08_reporting/stage_table.csv"))
    assert table.iloc[:, 0].tolist() == [
        "Baseline", "+EFM", "+EFM fine-tuning", "Baseline, equal budget",
    ]  # fmt: skip
    figures = latest_version(demo_run, "data/local/08_reporting/figures")
    names = sorted(p.name for p in figures.iterdir())
    assert "training_curves.png" in names and "qualitative.png" in names
    assert "efm_efm_evolution.png" in names and "efm_efm_difference.png" in names
    for name in names:
        with Image.open(figures / name) as image:
            assert image.width >= 400 and image.height >= 150, name  # text-only figures are short
    html = latest_version(demo_run, "data/local/08_reporting/report.html").read_text()
    assert html.count("data:image/png;base64,") == len(names)
    assert "Stage comparison" in html


def test_the_report_says_how_much_training_is_behind_each_model(demo_run):
    """The three stages' models had different budgets (fine-tuning continues the EFM stage):
    the report says so beside the comparison, and shows the baseline trained for the stages'
    epochs together, so that it implies no gain it does not measure."""
    models = (*STAGES, "baseline_equal")
    epochs = {stage: load_checkpoint(demo_run, stage)["epochs_run"] for stage in models}
    assert epochs["baseline_equal"] == sum(epochs[stage] for stage in STAGES) == 5
    behind = {**epochs, "finetune": epochs["efm"] + epochs["finetune"]}  # efm: fresh weights
    tables = latest_version(demo_run, "data/local/08_reporting/tables.md").read_text()
    budget = tables.split("# Training budget")[1]
    labels = ("Baseline", "+EFM", "+EFM fine-tuning", "Baseline, equal budget")
    for stage, label in zip(models, labels, strict=True):
        row = next(line for line in budget.splitlines() if line.startswith(f"| {label} "))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[-2:] == [str(epochs[stage]), str(behind[stage])], stage
    html = latest_version(demo_run, "data/local/08_reporting/report.html").read_text()
    assert "different amounts of training behind them" in html
    assert "trained for as many epochs as the three stages together" in html
