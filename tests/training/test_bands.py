"""Multi-band samples in training: the model takes the store's channels, which are normalised
with the training split's own per-band statistics (or ImageNet's for RGB, or a checkpoint's
when starting from one), and RGB-only augmentations are skipped for other bands."""

from __future__ import annotations

import logging

import albumentations as A
import numpy as np
import pytest
import torch

from efm_seg.data.samples import EncodedSample, write_store
from efm_seg.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationSamples,
    band_statistics,
    build_transforms,
)
from efm_seg.training.trainer import Trainer
from tests.conftest import scene_labels
from tests.training.test_trainer import CLASSES, IGNORE, make_config, train_ids, val_ids

BANDS = (4, 1, 2, 3, 5)


@pytest.fixture(scope="module")
def five_band_store(tmp_path_factory):
    rng = np.random.default_rng(3)
    samples = {}
    for i in range(10):
        labels = scene_labels(32, 32, seed=i)
        # Bands of very different levels and spreads, so ImageNet's statistics would be wrong.
        levels = np.array([200, 40, 120, 90, 10])[None, None, :]
        spread = np.array([30, 5, 60, 20, 3])[None, None, :]
        image = levels + spread * rng.standard_normal((32, 32, 5)) + 8 * labels[..., None]
        samples[f"s{i}"] = EncodedSample.from_arrays(
            np.clip(image, 0, 255).astype(np.uint8), labels
        )
    return write_store(tmp_path_factory.mktemp("bands") / "encoded", samples, bands=BANDS)


def make_trainer(store, init_checkpoint=None, **changes) -> Trainer:
    config = make_config(**{"epochs": 1, "augment": {"enabled": False}, **changes})
    return Trainer(
        config, store, train_ids(store), val_ids(store), CLASSES, IGNORE,
        init_checkpoint=init_checkpoint,
    )  # fmt: skip


def test_band_statistics_are_the_pixels_mean_and_std(five_band_store):
    ids = list(five_band_store.ids)[:4]
    pixels = np.concatenate([five_band_store.read(i)[0].reshape(-1, 5) / 255 for i in ids])
    mean, std = band_statistics(five_band_store, ids)
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)


def test_the_model_takes_the_bands_normalised_by_the_training_split(five_band_store):
    trainer = make_trainer(five_band_store)
    assert trainer.spec.in_channels == 5 and not trainer.rgb
    assert trainer.normalization["source"] == "dataset"
    # What the model is fed over the training split: zero mean, unit spread per band.
    images = torch.cat([b["image"] for b in trainer.train_eval_loader])
    assert images.shape[1] == 5
    per_band = images.transpose(0, 1).reshape(5, -1)
    torch.testing.assert_close(per_band.mean(1), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_band.std(1), torch.ones(5), atol=1e-3, rtol=0)
    # The training loader and validation loader use the same statistics.
    for loader in (trainer.train_loader, trainer.val_loader):
        np.testing.assert_allclose(loader.dataset._shift, trainer.train_eval_loader.dataset._shift)
    checkpoint = trainer.fit().checkpoint
    assert checkpoint["bands"] == list(BANDS)
    assert checkpoint["normalization"] == trainer.normalization
    assert checkpoint["model_spec"]["in_channels"] == 5


def test_a_stage_started_from_a_checkpoint_keeps_its_statistics(five_band_store):
    first = make_trainer(five_band_store).fit().checkpoint
    planted = {"mean": [0.5] * 5, "std": [0.25] * 5, "source": "dataset"}
    trainer = make_trainer(
        five_band_store, {**first, "normalization": planted}, init_from="previous"
    )
    assert trainer.normalization == planted
    np.testing.assert_allclose(trainer.val_loader.dataset._scale, [4.0] * 5)
    # Other bands than the checkpoint's are refused.
    with pytest.raises(ValueError, match=r"trained on bands \[1, 2, 3, 4, 5\], these samples"):
        make_trainer(five_band_store, {**first, "bands": [1, 2, 3, 4, 5]}, init_from="previous")


def test_imagenet_statistics_are_refused_for_other_bands(five_band_store):
    with pytest.raises(ValueError, match=r"normalization is imagenet, but the samples are bands"):
        make_trainer(five_band_store, normalization="imagenet")


def test_rgb_stores_keep_imagenet_statistics_unless_asked(tmp_path):
    labels = scene_labels(32, 32, seed=0)
    image = np.full((32, 32, 3), 100, np.uint8)
    store = write_store(
        tmp_path / "rgb", {f"s{i}": EncodedSample.from_arrays(image, labels) for i in range(10)}
    )
    trainer = make_trainer(store)
    assert trainer.rgb and trainer.normalization == {
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "source": "imagenet",
    }  # fmt: skip
    own = make_trainer(store, normalization="dataset").normalization
    np.testing.assert_allclose(own["mean"], [100 / 255] * 3)
    np.testing.assert_allclose(own["std"], [1.0] * 3)  # a constant band: no division by zero


def test_rgb_only_augmentations_are_skipped_for_other_bands(caplog):
    augment = {"hflip": 0.5, "hue_saturation": {"hue_shift_limit": 10, "p": 0.4}}
    rgb = build_transforms(augment, seed=0)
    assert any(isinstance(t, A.HueSaturationValue) for t in rgb.transforms)
    with caplog.at_level(logging.WARNING):
        other = build_transforms(augment, seed=0, rgb=False)
    assert [type(t) for t in other.transforms] == [A.HorizontalFlip]
    assert "augment.hue_saturation is skipped" in caplog.text
    # Brightness and contrast are adapted: the same change for every band, and said so.
    with caplog.at_level(logging.INFO):
        build_transforms({"brightness_contrast": {"limit": 0.1, "p": 0.5}}, rgb=False)
    assert "applied to every band alike" in caplog.text
    # Everything else works on any band count.
    full = build_transforms(
        {"hflip": 1, "brightness_contrast": {"limit": 0.2, "p": 1},
         "gauss_noise": {"std_range": [0.02, 0.05], "p": 1}},
        seed=0, rgb=False,
    )  # fmt: skip
    out = full(image=np.full((8, 8, 6), 90, np.uint8), mask=np.zeros((8, 8), np.uint8))
    assert out["image"].shape == (8, 8, 6)


def test_normalisation_needs_one_value_per_channel(five_band_store):
    with pytest.raises(ValueError, match=r"mean must be 5 finite numbers"):
        SegmentationSamples(five_band_store, ["s0"], mean=IMAGENET_MEAN, std=[0.2] * 5)
