"""The MLflow model (the ``mlflow`` extra): ``kedro run --pipelines training`` with tracking logs
the predict pipeline, with the checkpoint it trained, through kedro-mlflow's
``pipeline_ml_factory``; ``mlflow.pyfunc.load_model(uri).predict(images)`` labels an image
exactly as ``kedro run --pipelines predict`` does."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from efm_seg.pipeline_registry import register_pipelines
from tests.conftest import kedro_run, latest_version

# Non-default predict settings, given to both runs: the model keeps the training run's.
SETTINGS = {"predict.window": 64, "predict.overlap": 16, "predict.nodata": 0}


@pytest.fixture
def logged_model(demo_copy):
    """The demo project after ``kedro run --pipelines training`` (tracking on, SQLite store):
    the project and the URI of the model its parent run logged."""
    kedro_run(demo_copy, ["training"], **SETTINGS)
    uri = f"sqlite:///{demo_copy / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("efm-seg-local")
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.run_name LIKE 'efm-seg %'",  # parent runs, newest first
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    mlflow.set_tracking_uri(uri)
    yield demo_copy, f"runs:/{parent.info.run_id}/model", client, parent
    mlflow.set_tracking_uri(None)


def test_the_logged_model_labels_images_as_the_predict_pipeline(logged_model, tmp_path):
    project, uri, _, _ = logged_model
    rng = np.random.default_rng(3)
    image = rng.integers(1, 255, (90, 120, 3), dtype=np.uint8)
    image[:30, :50] = 0  # nodata (predict.nodata: 0)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.fromarray(image).save(scenes / "scene.png")
    kedro_run(project, ["predict"], predict_root=str(scenes), **SETTINGS)
    out = latest_version(project, "data/local/07_model_output/predict/predictions")
    written = np.asarray(Image.open(out / "scene_ids.png"))

    model = mlflow.pyfunc.load_model(uri)
    labelled = model.predict(image)
    assert labelled.shape == image.shape[:2]
    assert np.array_equal(labelled, written)
    assert (labelled[:30, :50] == 255).all() and (labelled[30:] != 255).all()
    # A batch of images: each labelled alone.
    batch = model.predict(np.stack([image, image[::-1].copy()]))
    assert np.array_equal(batch[0], written)
    assert batch.shape == (2, *image.shape[:2])


def test_the_model_holds_the_checkpoint_this_run_trained(logged_model):
    project, _, client, parent = logged_model
    # The run's own finetune checkpoint, one version (not every version saved before it).
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "model/artifacts")]
    assert "model/artifacts/best_checkpoint.pt" in artifacts
    local = client.download_artifacts(
        parent.info.run_id, "model/artifacts/best_checkpoint.pt", str(project / "downloaded")
    )
    trained = latest_version(project, "data/local/06_models/finetune/best_checkpoint.pt")
    assert Path(local).read_bytes() == trained.read_bytes()


def test_training_is_the_mlflow_pipeline_and_others_are_not():
    pipelines = register_pipelines()
    assert pipelines["training"].inference.inputs() == {
        "predict.images",
        "finetune.best_checkpoint",
        "params:dataset",
        "params:predict",
    }
    assert not hasattr(pipelines["__default__"], "inference")


def test_bad_images_are_named(logged_model):
    _, uri, _, _ = logged_model
    model = mlflow.pyfunc.load_model(uri)
    with pytest.raises(ValueError, match="images are float32; the model takes 8-bit"):
        model.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="images have 4 band"):
        model.predict(np.zeros((64, 64, 4), np.uint8))
