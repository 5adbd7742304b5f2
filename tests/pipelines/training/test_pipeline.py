"""The three training stages through a KedroSession on the tiny demo, and their wiring."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from PIL import Image

from efm_seg.pipelines.training import create_stage_pipeline
from efm_seg.training.models import model_from_checkpoint

TINY_TRAINING = """
baseline:
  overrides: {epochs: 2, efm: {enabled: false, start_epoch: 2, every: 1}}
efm:
  overrides: {epochs: 2, efm: {enabled: true, source: per_sample, start_epoch: 2, every: 1}}
finetune:
  overrides: {epochs: 1, efm: {enabled: true, source: online, start_epoch: 1, every: 1},
              init_from: previous}
"""


def run(project: Path, pipelines=None, **params):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params or None) as session:
        return session.run(pipeline_names=pipelines)


def only_version(folder: Path) -> Path:
    versions = sorted(folder.iterdir())
    return versions[-1] / folder.name


def test_stage_wiring():
    baseline = create_stage_pipeline("baseline")
    efm = create_stage_pipeline("efm", init_from="baseline.best_checkpoint")
    assert baseline.inputs() == {
        "encoded_samples", "split", "params:dataset", "params:efm_method", "params:training",
        "params:baseline.overrides",
    }  # fmt: skip
    assert "baseline.best_checkpoint" in efm.inputs()
    assert efm.outputs() == {"efm.best_checkpoint", "efm.history", "efm.efm_snapshots"}


@pytest.mark.slow
def test_data_three_stages_evaluation_and_report(kedro_project):
    (kedro_project / "conf/local/parameters_stages.yml").write_text(TINY_TRAINING)
    run(kedro_project, ["ingestion", "preprocessing", "split"])
    run(kedro_project, ["baseline", "efm", "finetune"], **{"training.batch_size": 4})
    for stage, epochs in (("baseline", 2), ("efm", 2), ("finetune", 1)):
        history = pd.read_csv(
            only_version(kedro_project / f"data/07_model_output/{stage}/history.csv")
        )
        assert history["epoch"].tolist() == list(range(1, epochs + 1))
        checkpoint = torch.load(
            only_version(kedro_project / f"data/06_models/{stage}/best_checkpoint.pt"),
            weights_only=True,
        )
        assert checkpoint["stage"] == stage and checkpoint["classes"][0] == "bare_land"
        model_from_checkpoint(checkpoint)
    efm_history = pd.read_csv(only_version(kedro_project / "data/07_model_output/efm/history.csv"))
    assert efm_history["efm_refreshed"].tolist() == [False, True]
    # One run, one version: the three stages' outputs share the session's timestamp.
    versions = {
        p.name
        for stage in ("baseline", "efm", "finetune")
        for p in (kedro_project / f"data/06_models/{stage}/best_checkpoint.pt").iterdir()
    }
    assert len(versions) == 1

    # Evaluation and reporting on those checkpoints.
    run(kedro_project, ["evaluation", "reporting"])
    metrics = pd.read_csv(only_version(kedro_project / "data/08_reporting/evaluation_metrics.csv"))
    assert sorted(zip(metrics["stage"], metrics["tta"], strict=True)) == [
        (s, t) for s in ("baseline", "efm", "finetune") for t in (False, True)
    ]
    table = pd.read_csv(only_version(kedro_project / "data/08_reporting/stage_table.csv"))
    assert table.iloc[:, 0].tolist() == ["Baseline", "+EFM", "+EFM fine-tuning"]
    figures = only_version(kedro_project / "data/08_reporting/figures")
    names = sorted(p.name for p in figures.iterdir())
    assert "training_curves.png" in names and "qualitative.png" in names
    assert "efm_efm_evolution.png" in names and "efm_efm_difference.png" in names
    for name in names:
        with Image.open(figures / name) as image:
            assert image.width >= 400 and image.height >= 150, name  # text-only figures are short
    html = only_version(kedro_project / "data/08_reporting/report.html").read_text()
    assert html.count("data:image/png;base64,") == len(names)
    assert "Stage comparison" in html
