"""``kedro run --pipelines export``: the trained model as ONNX, whose output equals PyTorch's on a
real Dubai image, with QGIS Deepness metadata that read back as written."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from efm_seg.inference.onnx_export import read_metadata, standardise
from efm_seg.models import model_from_checkpoint
from tests.conftest import SHARED_DATA, kedro_run, latest_version

DUBAI_IMAGE = SHARED_DATA / "dubai_aerial" / "Tile 1" / "images" / "image_part_001.jpg"


@pytest.fixture(scope="module")
def exported(demo_run, tmp_path_factory):
    """The demo's fine-tuned model exported once (export.tiles_size 64, overlap 16, 30 cm/px)."""
    import shutil

    project = tmp_path_factory.mktemp("export") / "project"
    shutil.copytree(demo_run, project)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        kedro_run(
            project, ["export"],
            **{"export.tiles_size": 64, "export.tiles_overlap": 16, "export.resolution": 30.0},
        )  # fmt: skip
    checkpoint = torch.load(
        latest_version(project, "data/local/06_models/finetune/best_checkpoint.pt"),
        weights_only=True,
    )
    model = latest_version(project, "data/local/06_models/export/model.onnx").read_bytes()
    yield checkpoint, model
    shutil.rmtree(project.parent, ignore_errors=True)


def test_the_metadata_follow_deepness_and_read_back(exported):
    checkpoint, model = exported
    metadata = read_metadata(model)
    assert metadata["model_type"] == "Segmentor"
    assert metadata["class_names"] == {str(i): c for i, c in enumerate(checkpoint["classes"])}
    assert (metadata["tiles_size"], metadata["tiles_overlap"]) == (64, 25)  # 16 px of 64: 25 %
    assert metadata["resolution"] == 30.0
    assert metadata["standardization_mean"] == pytest.approx(checkpoint["normalization"]["mean"])
    assert metadata["standardization_std"] == pytest.approx(checkpoint["normalization"]["std"])
    assert metadata["efm_seg_stage"] == "finetune"
    assert metadata["efm_seg_run_id"] == checkpoint["lineage"]["run_id"]
    assert metadata["efm_seg_temperature"] == pytest.approx(checkpoint["temperature"])


@pytest.mark.realdata
@pytest.mark.skipif(not DUBAI_IMAGE.is_file(), reason="needs ../shared/data (Dubai tiles)")
def test_onnxruntime_gives_pytorchs_probabilities_on_a_real_dubai_image(exported):
    checkpoint, model = exported
    image = np.asarray(Image.open(DUBAI_IMAGE).convert("RGB"))[:256, :320]  # sides of 32
    stats = checkpoint["normalization"]
    batch = standardise(torch.tensor(image).permute(2, 0, 1)[None], stats["mean"], stats["std"])
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    with torch.no_grad():
        logits = model_from_checkpoint(checkpoint).eval()(batch)
    # The softmax of the logits over the checkpoint's temperature (fitted on validation).
    assert checkpoint["temperature"] != 1.0
    expected = (logits / checkpoint["temperature"]).softmax(1).numpy()
    assert probabilities.shape == expected.shape == (1, len(checkpoint["classes"]), 256, 320)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_a_tile_size_the_model_cannot_take_is_refused_before_anything_is_written(demo_copy):
    with pytest.raises(ValueError, match=r"export.tiles_size"):
        kedro_run(demo_copy, ["export"], **{"export.tiles_size": 70, "export.tiles_overlap": 8})
    assert not (demo_copy / "data/local/06_models/export").exists()
