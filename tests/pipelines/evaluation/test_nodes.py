"""The evaluation node: its settings reach the scores, and the TTA rows really use eq. 13."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from efm_seg.evaluation import SegmentationEvaluator, predict_probs
from efm_seg.pipelines.evaluation.nodes import evaluate_stage
from efm_seg.training.data import SegmentationSamples
from efm_seg.training.models import (
    ModelSpec,
    build_model,
    make_checkpoint,
    model_from_checkpoint,
)
from tests.conftest import DATASET_PARAMS, PALETTE, write_tiny_store

CLASSES = list(PALETTE)
# Non-default values throughout, so a setting the node drops changes the scores.
EVALUATION = {
    "split": "val",
    "batch_size": 3,
    "device": "cpu",
    "boundary": {"dilation_ratio": 0.02, "pixels": 3},
    "calibration_bins": 7,
    "qualitative": {"count": 2},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_tiny_store(
        tmp_path_factory.mktemp("eval") / "encoded", 7, seed=1, ignore_fraction=0.02
    )


@pytest.fixture(scope="module")
def split(store) -> pd.DataFrame:
    names = ["train", "val", "val", "test", "val", "val", "val"]
    return pd.DataFrame({"sample_id": list(store.ids), "split": names})


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    """A randomly initialised FPN: far from flip-equivariant, so TTA changes its output."""
    spec = ModelSpec(arch="FPN", encoder="resnet18", num_classes=len(CLASSES))
    torch.manual_seed(0)
    return make_checkpoint(build_model(spec, None), spec, classes=CLASSES, epoch=7)


def reference(checkpoint, store, ids, tta: bool):
    """Scores and predictions computed here, with predict_probs and the evaluator directly."""
    model = model_from_checkpoint(checkpoint)
    evaluator = SegmentationEvaluator(
        len(CLASSES), ignore_index=255, boundary=EVALUATION["boundary"], calibration_bins=7
    )
    labels = {}
    loader = DataLoader(SegmentationSamples(store, ids), batch_size=2)
    with torch.no_grad():
        for start, batch in zip(range(0, len(ids), 2), loader, strict=True):
            probs = predict_probs(model, batch["image"], tta=tta)
            evaluator.update(probs, batch["mask"])
            for offset, prediction in enumerate(probs.argmax(dim=1)):
                labels[ids[start + offset]] = prediction.numpy().astype(np.uint8)
    return evaluator.compute(), labels


@pytest.mark.parametrize("tta", [False, True])
def test_scores_follow_the_tta_flag_and_the_settings(store, split, checkpoint, tta):
    overall, per_class, outputs = evaluate_stage(
        "efm", checkpoint, store, split, DATASET_PARAMS, {**EVALUATION, "tta": tta}
    )
    ids = sorted(split.loc[split["split"] == "val", "sample_id"])
    assert overall["tta"].tolist() == ([False, True] if tta else [False])
    assert overall["images"].tolist() == [len(ids)] * len(overall)
    assert overall["checkpoint_epoch"].tolist() == [7] * len(overall)
    for _, row in overall.iterrows():
        expected, _ = reference(checkpoint, store, ids, tta=bool(row["tta"]))
        for key, value in expected.overall.items():
            assert row[key] == pytest.approx(value, rel=1e-6, nan_ok=True), (row["tta"], key)
        assert (per_class["tta"] == row["tta"]).sum() == len(CLASSES)
    _, labels = reference(checkpoint, store, ids, tta=tta)
    assert outputs["ids"].tolist() == ids[:2]  # qualitative.count
    for sample_id, prediction in zip(outputs["ids"], outputs["predictions"], strict=True):
        np.testing.assert_array_equal(prediction, labels[sample_id])
    confusion_keys = sorted(k for k in outputs if k.startswith("confusion"))
    assert confusion_keys == (
        ["confusion_tta_false", "confusion_tta_true"] if tta else ["confusion_tta_false"]
    )


def test_tta_scores_differ_from_plain_ones(store, split, checkpoint):
    """Guards the test above: on this model the two settings score apart, so a TTA row
    computed without TTA could not match its reference."""
    ids = sorted(split.loc[split["split"] == "val", "sample_id"])
    plain, _ = reference(checkpoint, store, ids, tta=False)
    flipped, _ = reference(checkpoint, store, ids, tta=True)
    assert plain.overall["ece"] != pytest.approx(flipped.overall["ece"], rel=1e-3)
    assert not np.array_equal(plain.confusion, flipped.confusion)


def test_classes_of_another_dataset_are_refused(store, split, checkpoint):
    other = {**checkpoint, "classes": ["a", "b", "c"]}
    with pytest.raises(ValueError, match="trained on classes"):
        evaluate_stage("efm", other, store, split, DATASET_PARAMS, {**EVALUATION, "tta": False})
