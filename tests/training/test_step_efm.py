"""``efm.update: step``: each sample's EFM comes from its own training forward pass, turned back
to the sample's orientation, and reaches the loss the next time the sample is drawn; no extra
pass over the training set runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efm_seg.efm import fingerprint_map
from efm_seg.loading import (
    SegmentationSamples,
    apply_dihedral,
    build_transforms,
    dihedral_key,
    undo_dihedral,
)
from efm_seg.training.config import ConfigError
from tests.training.test_trainer import (
    EFM_MAP,
    GEOMETRIC,
    IGNORE,
    QUANTUM,
    fit_recorded,
    identify,
    make_asymmetric_store,
    per_sample_config,
    train_ids,
)
from tests.training.test_trainer import apply_dihedral as reference_dihedral


def undo_reference(x: torch.Tensor, key: tuple[int, bool]) -> torch.Tensor:
    """The inverse of the reference flip/rotation of test_trainer, written independently."""
    return torch.rot90(x.flip(-1) if key[1] else x, -key[0], dims=(-2, -1))


@pytest.mark.parametrize("key", range(8))
def test_undo_dihedral_inverts_apply_dihedral(key):
    x = torch.arange(2 * 5 * 5).view(2, 5, 5)
    assert torch.equal(undo_dihedral(apply_dihedral(x, key), key), x)
    rectangle = torch.arange(12).view(3, 4)
    if key % 2 == 0:  # half and no turns keep a rectangle's shape
        assert torch.equal(undo_dihedral(apply_dihedral(rectangle, key), key), rectangle)


def test_the_augmentation_is_read_back_from_the_pixel_numbers():
    transform = build_transforms(GEOMETRIC, seed=3)
    labels = np.random.default_rng(0).integers(0, 5, (6, 6)).astype(np.uint8)
    seen = set()
    for _ in range(64):
        out = transform(
            image=np.zeros((6, 6, 3), np.uint8),
            mask=labels,
            coords=np.arange(36, dtype=np.int32).reshape(6, 6),
        )
        key = dihedral_key(out["coords"])
        assert np.array_equal(apply_dihedral(torch.from_numpy(labels), key).numpy(), out["mask"])
        seen.add(key)
    assert seen == set(range(8))  # every flip/rotation came up and was recognised


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_asymmetric_store(tmp_path_factory.mktemp("store") / "encoded")


@pytest.fixture(scope="module")
def step_run(store):
    """Per-sample EFM from epoch 2 with update: step (collected from epoch 1); flips and 90°
    turns; batches of 3, so 2 of the 8 samples are dropped each epoch."""
    return fit_recorded(
        store,
        per_sample_config(
            epochs=3,
            efm={"enabled": True, "source": "per_sample", "update": "step", "start_epoch": 2},
        ),
    )


def test_the_loss_gets_each_samples_map_from_its_last_training_step(step_run, store):
    ids = train_ids(store)
    plain_masks = [item["mask"] for item in SegmentationSamples(store, ids)]
    latest: dict[int, torch.Tensor] = {}  # sample -> plain-orientation map of its last step
    checked = augmented = 0
    for epoch in (1, 2, 3):
        seen_now: dict[int, torch.Tensor] = {}
        for call in (c for c in step_run.calls if c.epoch == epoch):
            maps = fingerprint_map(
                call.logits.softmax(dim=1), call.masks, ignore_index=IGNORE, **EFM_MAP
            )
            for row, (mask, efm_map) in enumerate(zip(call.masks, maps, strict=True)):
                i, key = identify(mask, plain_masks)
                augmented += key != (0, False)
                if epoch == 1:
                    assert call.efm is None  # before start_epoch: collected, not used
                elif i in latest:
                    want = reference_dihedral(latest[i], key)
                    torch.testing.assert_close(
                        call.efm[row], want, atol=QUANTUM, rtol=0, msg=f"epoch {epoch} {ids[i]}"
                    )
                    checked += 1
                seen_now[i] = undo_reference(efm_map, key)
        latest.update(seen_now)
    assert checked >= 8 and augmented > 0
    # What is left in the store is each sample's map from its last step.
    efm_store = step_run.trainer.state.efm_store
    for i, want in latest.items():
        stored = torch.from_numpy(efm_store.get(i))
        torch.testing.assert_close(stored, want, atol=QUANTUM, rtol=0)


def test_no_pass_over_the_training_set_runs(step_run, store):
    plain_images = [item["image"] for item in SegmentationSamples(store, train_ids(store))]
    for epoch, forwards in step_run.raw_eval.items():  # eval-mode forwards: snapshots only
        for images, _ in forwards:
            for image in images:
                assert not any(torch.equal(image, p) for p in plain_images), epoch
    history = step_run.result.history
    assert [r["efm_refreshed"] for r in history] == [True, True, True]
    assert [r["efm_active"] for r in history] == [False, True, True]


def test_step_update_needs_the_per_sample_store():
    with pytest.raises(ConfigError, match=r"test.training.efm.*update: step fills the per-sample"):
        per_sample_config(efm={"enabled": True, "source": "online", "update": "step"})


def test_the_log_says_how_the_per_sample_maps_are_made():
    step = per_sample_config(efm={"enabled": True, "update": "step", "start_epoch": 3}).efm
    refresh = per_sample_config(efm={"enabled": True, "start_epoch": 3, "every": 4}).efm
    assert step.describe() == "per_sample from each training step, used from epoch 3"
    assert refresh.describe() == "per_sample from epoch 3, refreshed every 4"
