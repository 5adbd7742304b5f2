"""The training node: what it is given reaches the trainer (stage overrides, EFM settings,
the previous stage's checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from efm_seg.parameters import EFMLossParams
from efm_seg.pipelines.training.nodes import stage_trainer
from tests.conftest import DATASET_PARAMS, PALETTE, write_tiny_store

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
    "efm": {"enabled": True, "source": "online", "start_epoch": 1, "every": 3},
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
    return stage_trainer("efm")(store, split, DATASET_PARAMS, EFM_METHOD, TRAINING, OVERRIDES)


def test_overrides_and_efm_settings_reach_the_trainer(efm_stage):
    checkpoint, history, snapshots = efm_stage
    config = checkpoint["config"]
    assert checkpoint["stage"] == config["stage"] == "efm"
    assert config["efm_map"] == EFM_METHOD["map"]
    # The checkpoint records every effective value: the given ones, the defaults for the rest.
    assert config["loss"] == {**EFMLossParams().model_dump(), **EFM_METHOD["loss"]}
    assert config["lr"] == 3.0e-4 and config["ema_decay"] == 0.3
    assert config["efm"] == {"enabled": True, "source": "online", "start_epoch": 1, "every": 3}
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
    checkpoint, _, _ = train(store, split, DATASET_PARAMS, EFM_METHOD, TRAINING, fresh, previous)
    assert checkpoint["config"]["init_from"] is None  # the previous checkpoint was not read
    with pytest.raises(ValueError, match="trained on classes"):
        train(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
            {**OVERRIDES, "init_from": "previous"}, previous,
        )  # fmt: skip
    with pytest.raises(ValueError, match="no previous stage"):
        train(
            store, split, DATASET_PARAMS, EFM_METHOD, TRAINING,
            {**OVERRIDES, "init_from": "previous"}, None,
        )  # fmt: skip
