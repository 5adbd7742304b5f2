"""Exact resume: a stage interrupted after any epoch continues to the uninterrupted result."""

from __future__ import annotations

import pytest
import torch

from efm_seg.basics.provenance import processor_name
from efm_seg.training.resume import ResumeMismatchError, StateFile
from efm_seg.training.trainer import Trainer
from tests.conftest import write_tiny_store
from tests.training.test_trainer import CLASSES, IGNORE, make_config, train_ids, val_ids


class Interrupted(Exception):
    """Stands in for a crash in the middle of an epoch."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_tiny_store(tmp_path_factory.mktemp("resume") / "encoded", 10, seed=5)


def config(**changes):
    # Everything random on: shuffling, every augmentation, EMA, the per-sample EFM store.
    recipe = {
        "epochs": 4,
        "efm": {"enabled": True, "source": "per_sample", "start_epoch": 2, "every": 1},
        "augment": {
            "hflip": 0.5, "vflip": 0.5, "rotate90": 0.5,
            "brightness_contrast": {"limit": 0.2, "p": 0.5},
            "gauss_noise": {"std_range": [0.02, 0.06], "p": 0.5},
        },
    }  # fmt: skip
    return make_config(**{**recipe, **changes})


def trainer(store, cfg, state_file=None, key=None) -> Trainer:
    return Trainer(
        cfg, store, train_ids(store), val_ids(store), CLASSES, IGNORE,
        state_file=state_file, resume_key=key,
    )  # fmt: skip


def without_time(history):
    # Where each epoch ran (``hardware``) is asserted on its own.
    return [{k: v for k, v in row.items() if k not in ("seconds", "hardware")} for row in history]


@pytest.fixture(scope="module")
def uninterrupted(store):
    return trainer(store, config()).fit()


@pytest.mark.parametrize("crash_epoch", [3])  # mid-way, after the EFM started
def test_a_stage_resumed_after_a_crash_ends_as_an_uninterrupted_one(
    store, uninterrupted, tmp_path, crash_epoch, caplog
):
    state_file = StateFile(tmp_path / "state.pt")
    first = trainer(store, config(), state_file)
    steps = []

    def crash(*_):  # two optimiser steps per epoch: crash in the middle of crash_epoch
        steps.append(1)
        if len(steps) == 2 * (crash_epoch - 1) + 1:
            raise Interrupted

    first.state.optimizer.register_step_post_hook(crash)
    with pytest.raises(Interrupted):
        first.fit()
    assert torch.load(state_file.path, weights_only=True)["epoch"] == crash_epoch - 1

    second = trainer(store, config(), state_file)
    second.hardware = "Another processor"  # resumed on another machine
    with caplog.at_level("INFO"):
        result = second.fit()
    assert f"resumed from {state_file.path} after epoch {crash_epoch - 1} of 4" in caplog.text
    assert [row["hardware"] for row in result.history] == [processor_name()] * (crash_epoch - 1) + [
        "Another processor"
    ] * (4 - crash_epoch + 1)
    assert without_time(result.history) == without_time(uninterrupted.history)
    for name, tensor in uninterrupted.checkpoint["state_dict"].items():
        assert torch.equal(result.checkpoint["state_dict"][name], tensor), name
    for ours, theirs in zip(
        result.snapshots.values(), uninterrupted.snapshots.values(), strict=True
    ):
        assert (ours == theirs).all()
    assert not state_file.path.exists()  # finished: removed


def test_a_state_from_other_settings_or_data_is_refused(store, tmp_path):
    state_file = StateFile(tmp_path / "state.pt")
    first = trainer(store, config(epochs=2), state_file, key={"store": "a"})
    first.state.optimizer.register_step_post_hook(
        lambda *_: (_ for _ in ()).throw(Interrupted) if first.state.epoch == 1 else None
    )
    with pytest.raises(Interrupted):
        first.fit()
    with pytest.raises(ResumeMismatchError, match=r"recipe\.lr.*training\.resume\.enabled=false"):
        trainer(
            store, config(epochs=2, optimizer={"lr": 1e-3}), state_file, key={"store": "a"}
        )._resume()
    with pytest.raises(ResumeMismatchError, match="store differ"):
        trainer(store, config(epochs=2), state_file, key={"store": "b"})._resume()
    # Forcing a fresh start discards the state.
    fresh = trainer(
        store, config(epochs=2, resume={"enabled": False}), state_file, key={"store": "b"}
    )
    assert fresh._resume() == 0.0 and not state_file.path.exists()


def test_a_planted_pickle_is_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "state.pt"
    torch.save({"format": 1, "payload": Payload()}, path)
    with pytest.raises(ResumeMismatchError, match="weights_only=True"):
        StateFile(path).load()
    assert not marker.exists()
