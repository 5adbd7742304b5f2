"""The trainer on a tiny store: what reaches the loss, which weights are validated and saved.

The wiring tests run the trainer with NON-default parameter values (EFM map, loss, EMA decay,
augmentation, batch size) and record what actually happens through public hooks: a spy in
place of ``trainer.criterion``, forward hooks on the raw and EMA models, and an optimiser
step hook. A setting that never arrives, or an EFM that is zero, unaligned or computed from
the wrong loader, makes these tests fail. Expensive fits are module-scoped and shared.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix

from efm_seg.basics.mappings import deep_merge
from efm_seg.basics.provenance import processor_name
from efm_seg.data.samples import EncodedSample, write_store
from efm_seg.efm import EFMLoss, fingerprint_map
from efm_seg.loading import SegmentationSamples
from efm_seg.models import model_from_checkpoint
from efm_seg.training.config import TrainConfig
from efm_seg.training.trainer import StageResult, Trainer, epoch_scores
from tests.conftest import scene_labels, write_tiny_store

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"
CLASSES = ("land", "building", "water")
IGNORE = 255
QUANTUM = 1 / 255  # the per-sample store keeps EFMs as uint8: at most half of this off

# Every value differs from the code's defaults and from conf/base, so a dropped setting shows.
EFM_MAP = {"alpha": 0.3, "sigma": 1.0}
EFM_LOSS = {
    "lambda_ce": 0.8,
    "lambda_dice": 1.7,
    "label_smoothing": 0.1,
    "alpha_f": 1.3,
    "beta_f": 0.7,
    "gamma": 0.5,
    "kernel_size": 5,
    "topk_ratio": 0.6,
    "form": "eq7",
}
EQ6_KEYS = ("lambda_ce", "lambda_dice", "label_smoothing")
GEOMETRIC = {"hflip": 0.5, "vflip": 0.5, "rotate90": 0.5}
TRACKED = ("encoder.conv1.weight", "segmentation_head.0.weight")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_asymmetric_store(tmp_path_factory.mktemp("store") / "encoded")


def make_asymmetric_store(root):
    """Ten 64² samples with a few scattered ignore pixels, which also make every mask
    asymmetric: a flipped or rotated mask is never equal to another sample's."""
    rng = np.random.default_rng(0)
    samples = {}
    for i in range(10):
        labels = scene_labels(64, 64, seed=i)
        labels[rng.random((64, 64)) < 0.01] = IGNORE
        colours = np.array([[200, 170, 120], [70, 30, 150], [40, 90, 200]], np.int16)
        image = colours[np.minimum(labels, 2)] + rng.normal(0, 12, (64, 64, 3))
        samples[f"s{i}"] = EncodedSample.from_arrays(
            np.clip(image, 0, 255).astype(np.uint8), labels
        )
    return write_store(root, samples)


def make_config(efm_method: dict | None = None, **changes) -> TrainConfig:
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    if efm_method is None:
        efm_method = yaml.safe_load((CONF / "parameters_efm.yml").read_text())["efm_method"]
    tiny = {"epochs": 2, "batch_size": 4, "device": "cpu", "snapshots": {"count": 2}}
    return TrainConfig.from_params("test", training, deep_merge(tiny, changes), efm_method)


def train_ids(store) -> list[str]:
    return list(store.ids)[:8]


def val_ids(store) -> list[str]:
    return list(store.ids)[8:]


def make_trainer(store, config, init_checkpoint=None) -> Trainer:
    return Trainer(
        config,
        store,
        train_ids(store),
        val_ids(store),
        CLASSES,
        IGNORE,
        init_checkpoint=init_checkpoint,
    )


# -- recording what a fit does ---------------------------------------------------------------
@dataclass
class LossCall:
    """One call of the training criterion."""

    epoch: int
    logits: torch.Tensor
    masks: torch.Tensor
    efm: torch.Tensor | None
    loss: float


@dataclass
class Recording:
    """What a recorded fit did."""

    trainer: Trainer
    store: object
    result: StageResult
    calls: list[LossCall] = field(default_factory=list)
    # epoch -> (images, logits) of every eval-mode forward of the raw model: the EFM passes
    raw_eval: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    # epoch -> tracked EMA weights when the EMA model was validated
    ema_validated: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    # tracked raw weights after every optimiser step
    steps: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def active_calls(self) -> list[LossCall]:
        return [call for call in self.calls if call.efm is not None]


def fit_recorded(store, config: TrainConfig) -> Recording:
    """Build a trainer and fit it with spies on the criterion, the models and the optimiser."""
    trainer = make_trainer(store, config)
    recording = Recording(trainer=trainer, store=store, result=None)  # type: ignore[arg-type]
    state = trainer.state

    def epoch() -> int:  # state.epoch is the last completed epoch
        return state.epoch + 1

    criterion = trainer.criterion

    def spy(logits, masks, efm=None):
        loss = criterion(logits, masks, efm)
        recording.calls.append(
            LossCall(
                epoch(),
                logits.detach().float().clone(),
                masks.clone(),
                None if efm is None else efm.detach().clone(),
                float(loss.detach()),
            )
        )
        return loss

    trainer.criterion = spy

    def on_raw_forward(module, args, output):
        if not module.training:
            recording.raw_eval.setdefault(epoch(), []).append(
                (args[0].detach().clone(), output.detach().float().clone())
            )

    handles = [state.model.register_forward_hook(on_raw_forward)]
    if state.ema is not None:

        def on_ema_forward(module, args):
            # After the last epoch: the temperature fit, on a copy of the kept weights.
            if epoch() > config.epochs:
                return
            if not module.training and epoch() not in recording.ema_validated:
                weights = module.state_dict()
                recording.ema_validated[epoch()] = {k: weights[k].clone() for k in TRACKED}

        handles.append(state.ema.module.register_forward_pre_hook(on_ema_forward))

    def on_step(optimizer, args, kwargs):
        weights = state.model.state_dict()
        recording.steps.append({k: weights[k].detach().clone() for k in TRACKED})

    handles.append(state.optimizer.register_step_post_hook(on_step))
    recording.result = trainer.fit()
    for handle in handles:  # what tests do with the models afterwards is not the fit's
        handle.remove()
    trainer.criterion = criterion
    return recording


# -- expected values, computed independently of the trainer ----------------------------------
def dihedral(x: torch.Tensor):
    """The 8 flips/rotations of the last two dimensions (all that flips and 90° turns make)."""
    for k in range(4):
        turned = torch.rot90(x, k, dims=(-2, -1))
        yield (k, False), turned
        yield (k, True), turned.flip(-1)


def apply_dihedral(x: torch.Tensor, key: tuple[int, bool]) -> torch.Tensor:
    turned = torch.rot90(x, key[0], dims=(-2, -1))
    return turned.flip(-1) if key[1] else turned


def identify(mask: torch.Tensor, plain_masks: list[torch.Tensor]) -> tuple[int, tuple[int, bool]]:
    """Which plain sample ``mask`` is, and by which flip/rotation it was augmented."""
    found = [
        (i, key)
        for i, plain in enumerate(plain_masks)
        for key, variant in dihedral(plain)
        if variant.shape == mask.shape and torch.equal(variant, mask)
    ]
    assert len(found) == 1, f"a training mask matches {len(found)} augmented samples"
    return found[0]


def plain_fingerprints(
    recording: Recording, ids: list[str], epoch: int, efm_map: dict
) -> list[torch.Tensor]:
    """The EFM of each plain (un-augmented) sample of ``ids`` from the model's own prediction
    for it in the EFM pass of ``epoch``; fails if a plain image never went through the model."""
    plain = SegmentationSamples(recording.store, ids)
    rows = [
        (image, logits)
        for images, batch_logits in recording.raw_eval[epoch]
        for image, logits in zip(images, batch_logits, strict=True)
    ]
    maps = []
    for i in range(len(plain)):
        item = plain[i]
        logits = [out for image, out in rows if torch.equal(image, item["image"])]
        assert logits, f"epoch {epoch}: the plain image of {ids[i]} never went through the model"
        maps.append(
            fingerprint_map(
                logits[0].softmax(dim=0)[None],
                item["mask"][None],
                ignore_index=IGNORE,
                **efm_map,
            )[0]
        )
    return maps


def eq6_validation(store, batch_size: int, model: torch.nn.Module) -> dict[str, float]:
    """Eq. 6 loss (batch-size weighted, as the history records it) and IoU on the val split."""
    eq6 = EFMLoss(
        len(CLASSES),
        ignore_index=IGNORE,
        gamma=0.0,
        topk_ratio=1.0,
        **{k: EFM_LOSS[k] for k in EQ6_KEYS},
    )
    loader = DataLoader(SegmentationSamples(store, val_ids(store)), batch_size=batch_size)
    confusion = MulticlassConfusionMatrix(len(CLASSES), ignore_index=IGNORE)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["image"])
            total += float(eq6(logits, batch["mask"])) * len(batch["mask"])
            count += len(batch["mask"])
            confusion.update(logits.argmax(dim=1), batch["mask"])
    return {"loss": total / count, "iou": epoch_scores(confusion.compute())["iou"]}


# -- the per-sample EFM run: what reaches the loss -------------------------------------------
@pytest.fixture(scope="module")
def per_sample(store) -> Recording:
    """Per-sample EFM from epoch 2, refreshed at epochs 2 and 4; flips and 90° turns; batches
    of 3, so the shuffled training loader drops 2 of the 8 samples each epoch; EMA μ = 0.5."""
    return fit_recorded(store, per_sample_config())


def test_history_schedule_and_snapshots(per_sample):
    history = per_sample.result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["efm_refreshed"] for r in history] == [False, True, False, True]
    assert [r["efm_active"] for r in history] == [False, True, True, True]
    assert history[0]["lr"] == 5e-4 and history[-1]["lr"] < history[0]["lr"]  # cosine
    for key in ("train_loss", "val_loss", "val_iou", "val_f1", "val_accuracy", "seconds"):
        assert all(np.isfinite(r[key]) for r in history), key
    assert all(r["hardware"] == processor_name() for r in history)  # where each epoch ran
    snapshots = per_sample.result.snapshots
    assert snapshots["epochs"].tolist() == [2, 4]
    assert snapshots["efm"].shape == (2, 2, 64, 64) and snapshots["efm"].dtype == np.uint8
    assert snapshots["entropy"].shape == (2, 2, 64, 64)
    assert snapshots["ids"].tolist() == ["s8", "s9"]


def test_no_efm_reaches_the_loss_before_its_start_epoch(per_sample):
    assert [call.epoch for call in per_sample.calls] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [call.efm is not None for call in per_sample.calls] == [False] * 2 + [True] * 6


def test_per_sample_efm_is_the_models_own_fingerprint_moved_with_its_sample(per_sample, store):
    ids = train_ids(store)
    plain_masks = [item["mask"] for item in SegmentationSamples(store, ids)]
    expected = {epoch: plain_fingerprints(per_sample, ids, epoch, EFM_MAP) for epoch in (2, 4)}
    augmented = 0
    for call in per_sample.active_calls():
        refreshed_at = 4 if call.epoch >= 4 else 2
        for mask, efm in zip(call.masks, call.efm, strict=True):
            i, key = identify(mask, plain_masks)
            augmented += key != (0, False)
            want = apply_dihedral(expected[refreshed_at][i], key)
            torch.testing.assert_close(
                efm, want, atol=QUANTUM, rtol=0, msg=f"epoch {call.epoch}, {ids[i]}, {key}"
            )
            assert efm.max() > 0.5, "the EFM reaching the loss is (nearly) empty"
            assert torch.all(efm[mask == IGNORE] == 0), "EFM not zero at ignore pixels"
    assert augmented > 0, "no sample was flipped or turned: alignment went unchecked"


def test_every_training_sample_is_refreshed_from_the_plain_loader(per_sample, store):
    expected = plain_fingerprints(per_sample, train_ids(store), 4, EFM_MAP)
    efm_store = per_sample.trainer.state.efm_store
    for i, want in enumerate(expected):
        torch.testing.assert_close(
            torch.from_numpy(efm_store.get(i)), want, atol=QUANTUM / 2 + 1e-6, rtol=0
        )


def test_the_efm_map_settings_are_the_ones_used(per_sample, store):
    """Guards the two tests above: the configured alpha and sigma each move the maps by far
    more than the tolerance, so the trainer falling back to a default cannot pass them."""
    ids = train_ids(store)
    ours = plain_fingerprints(per_sample, ids, 4, EFM_MAP)
    for other_map in ({}, {"alpha": EFM_MAP["alpha"]}, {"sigma": EFM_MAP["sigma"]}):
        other = plain_fingerprints(per_sample, ids, 4, other_map)
        moved = max(float((a - b).abs().max()) for a, b in zip(ours, other, strict=True))
        assert moved > 5 * QUANTUM, other_map


def test_the_loss_settings_reach_the_criterion(per_sample):
    criterion = EFMLoss(len(CLASSES), ignore_index=IGNORE, **EFM_LOSS)
    for call in per_sample.calls:
        expected = float(criterion(call.logits, call.masks, call.efm))
        assert call.loss == pytest.approx(expected, rel=1e-6)
    for row in per_sample.result.history:  # the history reports what the criterion returned
        losses = [call.loss for call in per_sample.calls if call.epoch == row["epoch"]]
        assert row["train_loss"] == pytest.approx(np.mean(losses), rel=1e-9)
    call = per_sample.active_calls()[-1]
    with_efm = float(criterion(call.logits, call.masks, call.efm))
    assert with_efm != pytest.approx(float(criterion(call.logits, call.masks, None)), rel=1e-3)
    for key in EFM_LOSS:  # each setting changes this loss, so none can silently be dropped
        changed = {k: v for k, v in EFM_LOSS.items() if k != key}
        default = EFMLoss(len(CLASSES), ignore_index=IGNORE, **changed)
        assert float(default(call.logits, call.masks, call.efm)) != pytest.approx(
            with_efm, rel=1e-4
        ), key


def test_validation_is_eq6_on_the_ema_weights(per_sample, store):
    state = per_sample.trainer.state
    last = per_sample.result.history[-1]
    ema = eq6_validation(store, 3, state.ema.module)
    assert last["val_loss"] == pytest.approx(ema["loss"], rel=1e-6)
    assert last["val_iou"] == pytest.approx(ema["iou"], abs=1e-12)
    raw = eq6_validation(store, 3, state.model)
    assert raw["loss"] != pytest.approx(ema["loss"], rel=1e-4)  # the two are told apart


def test_ema_follows_every_step_with_the_configured_decay(per_sample):
    steps = per_sample.steps
    assert len(steps) == 8  # 2 batches × 4 epochs
    decay = 0.5
    average = {key: steps[0][key].clone() for key in TRACKED}  # the first update copies
    by_epoch = {}
    for n, step in enumerate(steps[1:], start=2):
        for key in TRACKED:
            average[key].lerp_(step[key], 1 - decay)
        if n % 2 == 0:
            by_epoch[n // 2] = {key: value.clone() for key, value in average.items()}
    for epoch, validated in per_sample.ema_validated.items():  # validated on the EMA weights
        for key in TRACKED:
            torch.testing.assert_close(validated[key], by_epoch[epoch][key], atol=1e-6, rtol=0)
    assert sorted(per_sample.ema_validated) == [1, 2, 3, 4]
    final = per_sample.trainer.state.ema.module.state_dict()
    for key in TRACKED:
        torch.testing.assert_close(final[key], average[key], atol=1e-6, rtol=0)
        assert not torch.allclose(final[key], steps[-1][key], atol=1e-6)


def test_the_best_epochs_ema_weights_are_saved_and_score_as_recorded(per_sample, store):
    history = per_sample.result.history
    best = max(history, key=lambda r: r["val_iou"])  # the first of equals, as the trainer
    buffer = io.BytesIO()
    torch.save(per_sample.result.checkpoint, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert checkpoint["epoch"] == best["epoch"] and checkpoint["ema"] is True
    assert checkpoint["metrics"]["val_iou"] == best["val_iou"]
    assert checkpoint["classes"] == list(CLASSES)
    assert checkpoint["config"]["efm_map"] == EFM_MAP
    assert checkpoint["config"]["loss"] == EFM_LOSS
    for key in TRACKED:
        assert torch.equal(
            checkpoint["state_dict"][key], per_sample.ema_validated[best["epoch"]][key]
        )
    scored = eq6_validation(store, 3, model_from_checkpoint(checkpoint))
    assert scored["iou"] == pytest.approx(best["val_iou"], abs=1e-12)
    assert scored["loss"] == pytest.approx(best["val_loss"], rel=1e-6)


# -- the other EFM sources -------------------------------------------------------------------
def source_run(store, source: str, **changes) -> Recording:
    config = make_config(
        {"map": EFM_MAP, "loss": EFM_LOSS},
        epochs=2,
        efm={"enabled": True, "source": source, "start_epoch": 2, "every": 1},
        **changes,
    )
    return fit_recorded(store, config)


@pytest.fixture(scope="module")
def online(store) -> Recording:
    """Online EFM from epoch 2, with an EMA of decay 0."""
    return source_run(store, "online", ema={"enabled": True, "decay": 0.0})


def test_ema_decay_zero_is_the_raw_weights(online):
    state = online.trainer.state
    raw = state.model.state_dict()
    ema = state.ema.module.state_dict()
    assert not torch.equal(online.steps[0][TRACKED[0]], online.steps[-1][TRACKED[0]])
    for key, value in raw.items():  # parameters and batch-norm buffers alike
        torch.testing.assert_close(ema[key], value, atol=0, rtol=0, msg=key)


def test_online_efm_is_the_fingerprint_of_the_batchs_own_prediction(online):
    recording = online
    active = recording.active_calls()
    assert {call.epoch for call in active} == {2} and len(active) == 2
    assert all(call.efm is None for call in recording.calls if call.epoch == 1)
    for call in active:
        probs = call.logits.softmax(dim=1)
        want = fingerprint_map(probs, call.masks, ignore_index=IGNORE, **EFM_MAP)
        torch.testing.assert_close(call.efm, want, atol=1e-6, rtol=0)
        assert call.efm.amax(dim=(1, 2)).min() > 0.5
        assert torch.all(call.efm[call.masks == IGNORE] == 0)


def test_validation_prior_is_the_mean_validation_fingerprint(store):
    recording = source_run(store, "validation_prior")
    prior = torch.stack(plain_fingerprints(recording, val_ids(store), 2, EFM_MAP)).mean(dim=0)
    active = recording.active_calls()
    assert {call.epoch for call in active} == {2} and len(active) == 2
    for call in active:
        for mask, efm in zip(call.masks, call.efm, strict=True):
            want = torch.where(mask != IGNORE, prior, 0.0)  # zero where nothing is scored
            torch.testing.assert_close(efm, want, atol=1e-6, rtol=0)


# -- seeds, initialisation, input sizes ------------------------------------------------------
def per_sample_config(**changes) -> TrainConfig:
    """The configuration of the shared per-sample fit (see :func:`per_sample`)."""
    settings = {
        "epochs": 4,
        "batch_size": 3,
        "augment": GEOMETRIC,
        "ema": {"enabled": True, "decay": 0.5},
        "efm": {"enabled": True, "source": "per_sample", "start_epoch": 2, "every": 2},
    }
    return make_config({"map": EFM_MAP, "loss": EFM_LOSS}, **{**settings, **changes})


def test_same_seed_same_run_and_same_initial_weights(per_sample, store):
    # The same seed repeats the shared fit's first epoch exactly (its learning rate, data order,
    # augmentations and initial weights do not depend on the number of epochs).
    again = make_trainer(store, per_sample_config(epochs=1)).fit()
    assert again.history[0]["train_loss"] == per_sample.result.history[0]["train_loss"]
    assert again.history[0]["val_iou"] == per_sample.result.history[0]["val_iou"]
    a = make_trainer(store, make_config()).state.model.state_dict()
    b = make_trainer(store, make_config(efm={"enabled": True})).state.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_a_previous_checkpoint(per_sample, store):
    previous = per_sample.result.checkpoint
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
        Trainer(make_config(), odd, ["s0", "s1"], ["s2"], CLASSES, IGNORE)


def test_a_store_replaced_during_training_stops_the_stage(tmp_path):
    from efm_seg.data.samples import StoreChangedError

    root = tmp_path / "encoded"
    store = write_tiny_store(root, 10, seed=3)
    trainer = make_trainer(store, make_config(epochs=3))
    steps = []

    def replace_store_once(*_):
        steps.append(1)
        if len(steps) == 3:  # in the middle of epoch 2 (two steps per epoch)
            write_tiny_store(root, 10, seed=4)

    trainer.state.optimizer.register_step_post_hook(replace_store_once)
    with pytest.raises(StoreChangedError, match="the test stage's epoch 2"):
        trainer.fit()
