"""The training node: what it is given reaches the trainer (stage overrides, EFM settings,
the previous stage's checkpoint), and its outputs record their lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from efm_seg.basics.lineage import LineageError, classes_fingerprint, split_fingerprint
from efm_seg.parameters import EFMLossParams
from efm_seg.pipelines.training.nodes import stage_trainer
from tests.conftest import DATASET_PARAMS, PALETTE, write_tiny_store

RUN_INFO = {
    "run_id": "run-1",
    "started": "2026-01-01T00:00:00+00:00",
    "env": "local",
    "git": {"commit": "abc", "dirty": False},
    "packages": {"torch": "x"},
    "machine": {"processor": "Test CPU", "logical_cpus": 2, "system": "Linux"},
}

CONF = Path(__file__).resolve().parents[3] / "conf" / "base"
TRAINING = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
EFM_METHOD = {
    "map": {"alpha": 0.35, "sigma": 1.5},
    "loss": {"topk_ratio": 0.5, "gamma": 0.7, "alpha_f": 1.1, "beta_f": 0.9, "form": "eq7"},
}
OVERRIDES = {
    "epochs": 1,
    "batch_size": 3,
    "device": "cpu",
    "optimizer": {"lr": 3.0e-4},
    "ema": {"decay": 0.3},
    "efm": {"enabled": True, "source": "online", "start_epoch": 1, "every": 3, "warmup_epochs": 2},
    "snapshots": {"count": 1},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    store = write_tiny_store(tmp_path_factory.mktemp("node") / "encoded", 6, seed=2)
    split = pd.DataFrame({"sample_id": list(store.ids), "split": ["train"] * 4 + ["val", "test"]})
    return store, split


@pytest.fixture(scope="module")
def efm_stage(data):
    store, split = data
    return stage_trainer("efm")(
        store, split, DATASET_PARAMS, EFM_METHOD, TRAINING, OVERRIDES, RUN_INFO, None
    )


def test_overrides_and_efm_settings_reach_the_trainer(efm_stage):
    checkpoint, history, snapshots, _ = efm_stage
    config = checkpoint["config"]
    assert checkpoint["stage"] == config["stage"] == "efm"
    assert config["efm_map"] == EFM_METHOD["map"]
    # The checkpoint records every effective value: the given ones, the defaults for the rest.
    assert config["loss"] == {**EFMLossParams().model_dump(), **EFM_METHOD["loss"]}
    assert config["lr"] == 3.0e-4 and config["ema_decay"] == 0.3
    assert config["efm"] == {
        "enabled": True,
        "source": "online",
        "update": "refresh",
        "start_epoch": 1,
        "every": 3,
        "warmup_epochs": 2,
    }
    assert config["weight_decay"] == TRAINING["optimizer"]["weight_decay"]  # kept from training
    assert config["batch_size"] == 3 and config["arch"] == TRAINING["model"]["arch"]
    assert checkpoint["classes"] == list(PALETTE)
    assert history["lr"].tolist() == [3.0e-4]
    assert history["efm_active"].tolist() == [True]
    assert snapshots["ids"].tolist() == ["s4"]


def test_init_from_decides_whether_the_previous_checkpoint_is_used(data, efm_stage):
    store, split = data
    previous = {**efm_stage[0], "classes": ["x", "y", "z"]}  # recognisably not this dataset's
    train = stage_trainer("finetune")
    fresh = {**OVERRIDES, "init_from": None}
    checkpoint, _, _, _ = train(
        store, split, DATASET_PARAMS, EFM_METHOD, TRAINING, fresh, RUN_INFO, None, previous
    )
    assert checkpoint["config"]["init_from"] is None  # the previous checkpoint was not read
    assert checkpoint["lineage"]["init"] is None
    with pytest.raises(ValueError, match="trained on classes"):
        train(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
            {**OVERRIDES, "init_from": "previous"}, RUN_INFO, None, previous,
        )  # fmt: skip
    with pytest.raises(ValueError, match="no previous stage"):
        train(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
            {**OVERRIDES, "init_from": "previous"}, RUN_INFO, None, None,
        )  # fmt: skip


def test_outputs_record_the_run_and_the_data(data, efm_stage):
    store, split = data
    checkpoint, history, snapshots, record = efm_stage
    assert checkpoint["lineage"] == {
        "run_id": "run-1",
        "stage": "efm",
        "store": store.fingerprint,
        "split": split_fingerprint(split),
        "classes": classes_fingerprint(list(PALETTE), DATASET_PARAMS["ignore_index"]),
        "dataset": checkpoint["lineage"]["dataset"],
        "init": None,
    }
    assert checkpoint["run"] == RUN_INFO
    assert checkpoint["device"] == "cpu" and checkpoint["precision"] == "fp32"
    assert checkpoint["epochs_run"] == 1 and checkpoint["train_seconds"] > 0
    assert history["run_id"].tolist() == ["run-1"]
    assert str(snapshots["run_id"]) == "run-1"
    # The record is the checkpoint without its weights, and it is plain JSON.
    assert record == {k: v for k, v in checkpoint.items() if k != "state_dict"}
    assert json.loads(json.dumps(record)) == record


def test_finetune_records_the_checkpoint_it_started_from(data, efm_stage):
    store, split = data
    train = stage_trainer("finetune")
    checkpoint, _, _, _ = train(
        store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
        {**OVERRIDES, "init_from": "previous"}, {"run_id": "run-2"}, None, efm_stage[0],
    )  # fmt: skip
    assert checkpoint["lineage"]["init"] == {"stage": "efm", "run_id": "run-1"}
    assert checkpoint["lineage"]["run_id"] == "run-2"


@pytest.mark.parametrize(
    ("lineage", "message"),
    [
        ({"split": "0123456789abcdef"}, "the efm checkpoint it starts from \\(run run-1\\).*split"),
        ({"store": "0123456789abcdef"}, "sample store .*kedro run --pipelines efm"),
        (None, "no lineage record"),
    ],
)
def test_a_previous_checkpoint_from_other_data_is_refused(data, efm_stage, lineage, message):
    store, split = data
    previous = dict(efm_stage[0])
    previous["lineage"] = None if lineage is None else {**previous["lineage"], **lineage}
    with pytest.raises(LineageError, match=message):
        stage_trainer("finetune")(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
            {**OVERRIDES, "init_from": "previous"}, RUN_INFO, None, previous,
        )  # fmt: skip


def test_training_needs_a_run_id(data):
    store, split = data
    with pytest.raises(ValueError, match="run_info has no run_id"):
        stage_trainer("baseline")(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING, OVERRIDES, {}, None
        )
