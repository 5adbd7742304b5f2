"""The evaluation nodes: the settings reach the scores, the TTA rows really use eq. 13, and
checkpoints that do not share one lineage are refused before anything is scored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from efm_seg.basics.lineage import LineageError
from efm_seg.evaluation import SegmentationEvaluator, predict_probs
from efm_seg.evaluation.scoring import evaluate_stage
from efm_seg.loading import SegmentationSamples
from efm_seg.models import (
    ModelSpec,
    build_model,
    make_checkpoint,
    model_from_checkpoint,
)
from efm_seg.pipelines.evaluation.nodes import check_lineage, combine_stages
from tests.conftest import DATASET_PARAMS, PALETTE, lineage_of, write_tiny_store

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
RUN_INFO = {"run_id": "eval-run"}


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
def checkpoint(store, split) -> dict:
    """A randomly initialised FPN: far from flip-equivariant, so TTA changes its output."""
    spec = ModelSpec(arch="FPN", encoder="resnet18", num_classes=len(CLASSES))
    torch.manual_seed(0)
    return make_checkpoint(
        build_model(spec, None),
        spec,
        classes=CLASSES,
        epoch=7,
        stage="efm",
        lineage=lineage_of(store, split, run_id="train-run"),
    )


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
        "efm", checkpoint, store, split, DATASET_PARAMS, {**EVALUATION, "tta": tta}, RUN_INFO
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
        evaluate_stage(
            "efm", other, store, split, DATASET_PARAMS, {**EVALUATION, "tta": False}, RUN_INFO
        )


def test_rows_and_predictions_record_the_lineage(store, split, checkpoint):
    overall, _, outputs = evaluate_stage(
        "efm", checkpoint, store, split, DATASET_PARAMS, {**EVALUATION, "tta": True}, RUN_INFO
    )
    lineage = checkpoint["lineage"]
    for _, row in overall.iterrows():
        assert row["checkpoint_run"] == "train-run" and row["evaluation_run"] == "eval-run"
        assert (row["store"], row["split"], row["classes"]) == (
            store.fingerprint, lineage["split"], lineage["classes"],
        )  # fmt: skip
        assert (row["init_stage"], row["init_run"]) == ("", "")
        assert row["device"] == "cpu" and row["seconds"] > 0
    assert overall["evaluation"].nunique() == 1
    assert str(outputs["checkpoint_run"]) == "train-run"
    assert str(outputs["evaluation_run"]) == "eval-run"
    other_settings, _, _ = evaluate_stage(
        "efm", checkpoint, store, split, DATASET_PARAMS, {**EVALUATION, "tta": False}, RUN_INFO
    )
    assert other_settings["evaluation"].iloc[0] != overall["evaluation"].iloc[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store": "0123456789abcdef"}, "sample store .*preprocessed again"),
        ({"split": "0123456789abcdef"}, "split .*split again"),
        ({"classes": "0123456789abcdef"}, "classes .*changed since"),
    ],
)
def test_a_checkpoint_from_other_data_is_refused(store, split, checkpoint, change, message):
    other = {**checkpoint, "lineage": {**checkpoint["lineage"], **change}}
    with pytest.raises(LineageError, match=f"run train-run.*{message}"):
        evaluate_stage("efm", other, store, split, DATASET_PARAMS, EVALUATION, RUN_INFO)


def test_a_split_made_again_refuses_the_old_checkpoint(store, split, checkpoint):
    resplit = split.assign(split=split["split"].iloc[::-1].to_numpy())
    with pytest.raises(LineageError, match="split"):
        evaluate_stage("efm", checkpoint, store, resplit, DATASET_PARAMS, EVALUATION, RUN_INFO)
    # Row order alone is not a new split.
    evaluate_stage(
        "efm", checkpoint, store, split.iloc[::-1], DATASET_PARAMS,
        {**EVALUATION, "tta": False}, RUN_INFO,
    )  # fmt: skip


def test_a_checkpoint_without_lineage_is_refused(store, split, checkpoint):
    legacy = {k: v for k, v in checkpoint.items() if k != "lineage"}
    with pytest.raises(LineageError, match=r"no lineage record.*train the stage again"):
        evaluate_stage("efm", legacy, store, split, DATASET_PARAMS, EVALUATION, RUN_INFO)


def stage_checkpoints(checkpoint, store, split, efm_run="efm-1", finetune_parent="efm-1"):
    return [
        {**checkpoint, "stage": "baseline", "lineage": lineage_of(store, split, "base-1")},
        {**checkpoint, "stage": "efm", "lineage": lineage_of(store, split, efm_run)},
        {
            **checkpoint,
            "stage": "finetune",
            "lineage": lineage_of(
                store, split, "ft-1", "finetune", {"stage": "efm", "run_id": finetune_parent}
            ),
        },
        {**checkpoint, "stage": "baseline_equal", "lineage": lineage_of(store, split, "eq-1")},
    ]


def test_check_lineage_accepts_one_lineage(store, split, checkpoint):
    checked = check_lineage(
        *stage_checkpoints(checkpoint, store, split), store, split, DATASET_PARAMS
    )
    assert checked["finetune"]["init_run"] == "efm-1"
    assert checked["baseline_equal"]["checkpoint_run"] == "eq-1"
    assert {record["store"] for record in checked.values()} == {store.fingerprint}


def test_an_equal_budget_baseline_from_other_data_is_refused(store, split, checkpoint):
    checkpoints = stage_checkpoints(checkpoint, store, split)
    checkpoints[3]["lineage"] = {**checkpoints[3]["lineage"], "split": "0123456789abcdef"}
    with pytest.raises(LineageError, match="baseline_equal: the checkpoint \\(run eq-1\\)"):
        check_lineage(*checkpoints, store, split, DATASET_PARAMS)


def test_a_finetune_from_another_efm_run_is_refused(store, split, checkpoint):
    checkpoints = stage_checkpoints(checkpoint, store, split, efm_run="efm-2")
    with pytest.raises(
        LineageError,
        match=r"finetune .* started from the efm checkpoint of run efm-1, but the efm checkpoint "
        r"compared is from run efm-2.*--load-versions efm.best_checkpoint:efm-1",
    ):
        check_lineage(*checkpoints, store, split, DATASET_PARAMS)


def test_a_stage_from_other_data_is_refused_before_any_scoring(store, split, checkpoint):
    checkpoints = stage_checkpoints(checkpoint, store, split)
    checkpoints[0]["lineage"] = {**checkpoints[0]["lineage"], "split": "0123456789abcdef"}
    with pytest.raises(LineageError, match="baseline: the checkpoint \\(run base-1\\)"):
        check_lineage(*checkpoints, store, split, DATASET_PARAMS)


def test_the_scored_checkpoint_must_be_the_checked_one(store, split, checkpoint):
    checked = check_lineage(
        *stage_checkpoints(checkpoint, store, split), store, split, DATASET_PARAMS
    )
    with pytest.raises(LineageError, match="not the one whose lineage was checked"):
        evaluate_stage(
            "efm", checkpoint, store, split, DATASET_PARAMS, EVALUATION, RUN_INFO, checked
        )


def rows(stage, checkpoint_run, init=("", ""), split="sp", evaluation="ev"):
    return pd.DataFrame(
        [
            {
                "stage": stage, "tta": tta, "checkpoint_run": checkpoint_run,
                "init_stage": init[0], "init_run": init[1], "store": "st", "split": split,
                "classes": "cl", "evaluation_run": "e1", "evaluation": evaluation,
            }
            for tta in (False, True)
        ]
    )  # fmt: skip


def test_combine_stages_refuses_tables_of_different_lineages():
    per_class = [pd.DataFrame({"stage": [s]}) for s in ("baseline", "efm", "finetune")]
    good = [rows("baseline", "b1"), rows("efm", "e1"), rows("finetune", "f1", ("efm", "e1"))]
    overall, _ = combine_stages(*good, *per_class)
    assert len(overall) == 6
    other_split = [good[0], rows("efm", "e1", split="other"), good[2]]
    with pytest.raises(LineageError, match="split sp \\(baseline\\) vs other \\(efm\\)"):
        combine_stages(*other_split, *per_class)
    other_settings = [good[0], good[1], rows("finetune", "f1", ("efm", "e1"), evaluation="x")]
    with pytest.raises(LineageError, match="different evaluation settings"):
        combine_stages(*other_settings, *per_class)
    legacy = [frame.drop(columns=["init_run"]) for frame in good]
    with pytest.raises(LineageError, match="no lineage column"):
        combine_stages(*legacy, *per_class)
