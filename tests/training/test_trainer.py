"""The trainer on a tiny store: schedule, EMA, EFM sources, checkpoints, determinism."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from efm_seg.data.samples import EncodedSample, write_store
from efm_seg.training.config import TrainConfig, deep_merge
from efm_seg.training.models import model_from_checkpoint
from efm_seg.training.trainer import Trainer
from tests.conftest import scene_labels

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"
CLASSES = ("land", "building", "water")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    samples = {}
    for i in range(10):
        labels = scene_labels(64, 64, seed=i)
        labels[rng.random((64, 64)) < 0.01] = 255  # a few ignore pixels
        colours = np.array([[200, 170, 120], [70, 30, 150], [40, 90, 200]], np.int16)
        image = colours[np.minimum(labels, 2)] + rng.normal(0, 12, (64, 64, 3))
        samples[f"s{i}"] = EncodedSample.from_arrays(
            np.clip(image, 0, 255).astype(np.uint8), labels
        )
    return write_store(tmp_path_factory.mktemp("store") / "encoded", samples)


def make_config(**changes) -> TrainConfig:
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    efm_method = yaml.safe_load((CONF / "parameters_efm.yml").read_text())["efm_method"]
    tiny = {"epochs": 2, "batch_size": 4, "device": "cpu", "snapshots": {"count": 2}}
    return TrainConfig.from_params("test", training, deep_merge(tiny, changes), efm_method)


def make_trainer(store, config, init_checkpoint=None) -> Trainer:
    ids = list(store.ids)
    return Trainer(config, store, ids[:8], ids[8:], CLASSES, 255, init_checkpoint=init_checkpoint)


def test_history_schedule_and_snapshots(store):
    config = make_config(epochs=5, efm={"enabled": True, "start_epoch": 2, "every": 2})
    result = make_trainer(store, config).fit()
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert [r["efm_refreshed"] for r in history] == [False, True, False, True, False]
    assert [r["efm_active"] for r in history] == [False, True, True, True, True]
    assert history[0]["lr"] == 5e-4 and history[-1]["lr"] < history[0]["lr"]  # cosine
    for key in ("train_loss", "val_loss", "val_iou", "val_f1", "val_accuracy", "seconds"):
        assert all(np.isfinite(r[key]) for r in history), key
    snapshots = result.snapshots
    assert snapshots["epochs"].tolist() == [2, 4]
    assert snapshots["efm"].shape == (2, 2, 64, 64) and snapshots["efm"].dtype == np.uint8
    assert snapshots["entropy"].shape == (2, 2, 64, 64)
    assert snapshots["ids"].tolist() == ["s8", "s9"]


def test_best_checkpoint_reloads_with_identical_outputs_and_metrics(store):
    trainer = make_trainer(store, make_config(epochs=3))
    result = trainer.fit()
    checkpoint = torch.load(_save(result.checkpoint), weights_only=True)
    best = max(result.history, key=lambda r: r["val_iou"])
    assert checkpoint["epoch"] == best["epoch"]
    assert checkpoint["metrics"]["val_iou"] == best["val_iou"]
    assert checkpoint["classes"] == list(CLASSES)
    reloaded = model_from_checkpoint(checkpoint)
    trainer.state.eval_model.load_state_dict(reloaded.state_dict())
    assert trainer._validate()["iou"] == best["val_iou"]  # the saved weights are the scored ones


def _save(checkpoint):
    import io

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer


def test_ema_weights_are_validated_and_saved(store):
    trainer = make_trainer(store, make_config(epochs=1, ema={"enabled": True, "decay": 0.5}))
    raw_before = {k: v.clone() for k, v in trainer.state.model.state_dict().items()}
    result = trainer.fit()
    ema = trainer.state.ema.module.state_dict()
    saved = result.checkpoint["state_dict"]
    raw = trainer.state.model.state_dict()
    weight = next(k for k in saved if k.endswith("weight") and saved[k].ndim == 4)
    assert torch.equal(saved[weight], ema[weight])
    assert not torch.equal(ema[weight], raw[weight])
    assert not torch.equal(raw[weight], raw_before[weight])
    assert result.checkpoint["ema"] is True


@pytest.mark.parametrize("source", ["per_sample", "online", "validation_prior"])
def test_each_efm_source_changes_the_loss(store, source):
    baseline = make_trainer(store, make_config(epochs=1)).fit().history[0]["train_loss"]
    config = make_config(epochs=1, efm={"enabled": True, "source": source, "start_epoch": 1})
    efm = make_trainer(store, config).fit().history[0]["train_loss"]
    assert efm != pytest.approx(baseline, rel=1e-3)


def test_same_seed_same_run_and_same_initial_weights(store):
    first = make_trainer(store, make_config(epochs=1)).fit()
    second = make_trainer(store, make_config(epochs=1)).fit()
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]
    a = make_trainer(store, make_config()).state.model.state_dict()
    b = make_trainer(store, make_config(efm={"enabled": True})).state.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_a_previous_checkpoint(store):
    previous = make_trainer(store, make_config(epochs=1)).fit().checkpoint
    trainer = make_trainer(store, make_config(init_from="previous"), init_checkpoint=previous)
    state = trainer.state.model.state_dict()
    assert all(torch.equal(state[k], previous["state_dict"][k]) for k in state)
    other = make_config(model={"encoder": "resnet34"}, init_from="previous")
    with pytest.raises(ValueError, match="checkpoint to start from"):
        make_trainer(store, other, init_checkpoint=previous)


def test_input_sizes_the_model_cannot_take_are_explained(tmp_path):
    odd = write_store(
        tmp_path / "odd",
        {
            f"s{i}": EncodedSample.from_arrays(
                np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50), np.uint8)
            )
            for i in range(3)
        },
    )
    with pytest.raises(ValueError, match=r"preprocessing\.size"):
        Trainer(make_config(), odd, ["s0", "s1"], ["s2"], CLASSES, 255)
