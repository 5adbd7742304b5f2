"""Numeric faults: a NaN/Inf loss, gradient or weight stops the stage before it does harm, names
where it happened, and leaves a state from before it that resumes to the uninterrupted result."""

from __future__ import annotations

import math

import pytest
import torch
from kedro.io import DatasetError

from efm_seg.framework.datasets import TorchCheckpointDataset
from efm_seg.training.resume import StateFile
from efm_seg.training.trainer import NumericFaultError, Trainer
from tests.conftest import write_tiny_store
from tests.training.test_trainer import CLASSES, IGNORE, make_config, train_ids, val_ids

EPOCHS = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_tiny_store(tmp_path_factory.mktemp("faults") / "encoded", 10, seed=7)


def config(**changes):
    recipe = {
        "epochs": EPOCHS,
        "efm": {"enabled": True, "source": "per_sample", "start_epoch": 2, "every": 1},
        "augment": {"hflip": 0.5, "vflip": 0.5},
    }
    return make_config(**{**recipe, **changes})


def trainer(store, cfg, state_file=None) -> Trainer:
    return Trainer(
        cfg, store, train_ids(store), val_ids(store), CLASSES, IGNORE, state_file=state_file
    )


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def inject_at(model_trainer: Trainer, epoch: int, batch: int, fault) -> None:
    """Call ``fault(loss)`` on the loss of one training batch (1-based epoch and batch)."""
    criterion = model_trainer.criterion
    calls = []
    per_epoch = len(model_trainer.train_loader)

    def faulty(logits, masks, efm=None):
        loss = criterion(logits, masks, efm)
        calls.append(1)
        if len(calls) == (epoch - 1) * per_epoch + batch:
            loss = fault(loss)
        return loss

    model_trainer.criterion = faulty


@pytest.fixture(scope="module")
def uninterrupted(store):
    return trainer(store, config()).fit()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_stops_the_stage_and_resumes_from_the_epoch_before(
    store, uninterrupted, tmp_path, value
):
    state_file = StateFile(tmp_path / "state.pt")
    faulty = trainer(store, config(), state_file)
    inject_at(faulty, epoch=2, batch=2, fault=lambda loss: loss * value)
    with pytest.raises(
        NumericFaultError,
        match=r"test: the loss became NaN or infinite in epoch 2, batch 2 of 2 \(samples "
        r"\w+, \w+, \w+, \w+\); the step was not taken.*state after epoch 1 is saved in "
        rf"{state_file.path}.*training.optimizer.lr = 0.0005",
    ):
        faulty.fit()
    assert torch.load(state_file.path, weights_only=True)["epoch"] == 1

    # The saved state is from before the fault: started again, the run ends as if nothing
    # had happened (the fault was transient).
    result = trainer(store, config(), state_file).fit()
    assert without_time(result.history) == without_time(uninterrupted.history)


def test_a_non_finite_gradient_is_caught_before_the_weights_change(store, tmp_path):
    # Without clipping too: the gradient norm is computed all the same.
    faulty = trainer(store, config(grad_clip=0), StateFile(tmp_path / "state.pt"))
    weight = faulty.state.model.segmentation_head[0].weight
    before = {}

    def poison(grad):
        before.update({k: v.clone() for k, v in faulty.state.model.state_dict().items()})
        return torch.full_like(grad, math.nan)

    inject_at(faulty, epoch=1, batch=2, fault=lambda loss: (weight.register_hook(poison), loss)[1])
    with pytest.raises(
        NumericFaultError,
        match=r"the gradient became NaN or infinite in epoch 1, batch 2 of 2.*No epoch had "
        r"completed, so there is no state to resume from",
    ):
        faulty.fit()
    for name, tensor in faulty.state.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_non_finite_weights_are_never_kept_as_the_best(store, tmp_path):
    """EMA weights poisoned in epoch 2 (training never sees them) stop the stage when they are
    validated, before they can be kept as the best or saved."""
    state_file = StateFile(tmp_path / "state.pt")
    faulty = trainer(store, config(), state_file)
    steps = []

    def poison(*_):
        steps.append(1)
        if len(steps) == 4:  # epoch 2's last step; the EMA update that follows keeps the inf
            faulty.state.ema.module.decoder.p5.weight.data.fill_(math.inf)

    faulty.state.optimizer.register_step_post_hook(poison)
    with pytest.raises(
        NumericFaultError, match=r"the validated weights \(.*p5.weight.*\) became NaN or infinite"
    ):
        faulty.fit()
    assert faulty.state.best_epoch == 1
    assert all(torch.isfinite(t).all() for t in faulty.state.best_state.values())
    assert torch.load(state_file.path, weights_only=True)["epoch"] == 1


def test_a_scaled_step_with_inf_gradients_is_skipped_and_training_goes_on(store):
    """fp16's gradient scaler (run here on the CPU) skips the step, as torch intends."""
    faulty = trainer(store, config(epochs=2, ema={"enabled": False}))
    faulty.state.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    inject_at(faulty, epoch=2, batch=1, fault=lambda loss: loss * math.inf)
    result = faulty.fit()
    assert [row["skipped_steps"] for row in result.history] == [0, 1]
    assert faulty.state.scaler.get_scale() == 2.0**7  # lowered once
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_every_step_skipped_is_a_fault(store):
    faulty = trainer(store, config(epochs=1))
    faulty.state.scaler = torch.amp.GradScaler("cpu")
    inject_at(faulty, epoch=1, batch=1, fault=lambda loss: loss * math.nan)
    inject_at(faulty, epoch=1, batch=2, fault=lambda loss: loss * math.nan)
    with pytest.raises(NumericFaultError, match="the loss at every gradient scale became NaN"):
        faulty.fit()


def test_a_checkpoint_with_non_finite_weights_is_never_saved(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "best.pt"))
    weights = {"head.weight": torch.tensor([1.0, math.nan]), "head.bias": torch.zeros(2)}
    with pytest.raises(DatasetError, match=r"\['state_dict'\]\['head.weight'\] holds NaN"):
        dataset.save({"state_dict": weights, "epoch": 3})
    assert not (tmp_path / "best.pt").exists()
    dataset.save({"state_dict": {"steps": torch.tensor([2**40])}, "epoch": 3})  # ints are fine
