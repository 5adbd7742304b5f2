"""Training data: EFM store, augmentations (alignment of image, mask and EFM), dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from efm_seg.data.samples import EncodedSample, SampleStore, write_store
from efm_seg.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EFMStore,
    SegmentationSamples,
    build_transforms,
    reseed_transform,
    sample_shape,
)

DEFAULT_AUGMENT = {
    "hflip": 0.5,
    "vflip": 0.5,
    "rotate90": 0.5,
    "brightness_contrast": {"limit": 0.2, "p": 0.5},
    "gauss_noise": {"std_range": [0.02, 0.06], "p": 0.3},
}
SIDE = 8
MARKER = (0, 0), (0, 1), (0, 2), (1, 0)  # an L with arms of unequal length: no symmetry
MARKER_CLASS = 200
QUANT_TOL = 0.5 / 255 + 1e-6  # uint8 quantisation: half a step, plus float32 rounding


# -- helpers --------------------------------------------------------------------------------


def pixel_ids(side: int = SIDE) -> np.ndarray:
    """Every pixel its own label ``0..side²-1``: any misalignment shows at every pixel."""
    return np.arange(side * side, dtype=np.uint8).reshape(side, side)


def marked_sample(side: int = SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, labels and EFM carrying the same asymmetric marker (red / class 200 / 1.0).

    Off the marker: blue image, per-pixel labels ``0..side²-1`` and EFM ``0.1 + id/1000``, so
    the EFM and the mask also stay aligned pixel by pixel.
    """
    labels = pixel_ids(side)
    image = np.zeros((side, side, 3), dtype=np.uint8)
    image[..., 2] = 255
    efm = (0.1 + labels.astype(np.float32) / 1000).astype(np.float32)
    for y, x in MARKER:
        labels[y, x] = MARKER_CLASS
        image[y, x] = (255, 0, 0)
        efm[y, x] = 1.0
    return image, labels, efm


def dihedral_key(labels: np.ndarray) -> tuple[int, ...]:
    """Where the marker went, as a hashable key."""
    return tuple(np.flatnonzero(labels == MARKER_CLASS).tolist())


def assert_aligned(image: np.ndarray, labels: np.ndarray, efm: np.ndarray) -> None:
    marker = labels == MARKER_CLASS
    assert marker.sum() == len(MARKER)
    red, blue = image[..., 0].astype(int), image[..., 2].astype(int)
    # Brightness/contrast/noise keep red > blue on the marker and blue > red elsewhere.
    assert np.all(red[marker] > blue[marker] + 60)
    assert np.all(blue[~marker] > red[~marker] + 60)
    assert np.all(efm[marker] == 1.0)
    np.testing.assert_allclose(efm[~marker], 0.1 + labels[~marker] / 1000, atol=1e-6)


def make_store(
    root: Path, count: int = 4, shape: tuple[int, int] = (6, 8), seed: int = 0
) -> SampleStore:
    rng = np.random.default_rng(seed)
    samples = {}
    for i in range(count):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        labels = rng.integers(0, 3, shape, dtype=np.uint8)
        labels[0, 0] = 255
        samples[f"s{i}"] = EncodedSample.from_arrays(image, labels)
    return write_store(root, samples)


# -- augmentations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "augment",
    [{"hflip": 1.0, "vflip": 1.0, "rotate90": 1.0}, DEFAULT_AUGMENT],
    ids=["geometric-p1", "default"],
)
def test_augmentation_keeps_image_mask_and_efm_aligned(augment: dict) -> None:
    image, labels, efm = marked_sample()
    outcomes = set()
    for seed in range(48):
        transform = build_transforms(augment, seed=seed)
        for _ in range(2):
            out = transform(image=image, mask=labels, efm=efm)
            assert out["image"].dtype == np.uint8
            assert out["mask"].dtype == np.uint8
            assert out["efm"].dtype == np.float32
            assert_aligned(out["image"], out["mask"], out["efm"])
            outcomes.add(dihedral_key(out["mask"]))
    # Not vacuous: the marker moved. p=1 flips + rot90 reach 4 poses; the default set all 8.
    assert dihedral_key(labels) in outcomes
    assert len(outcomes) == (4 if augment is not DEFAULT_AUGMENT else 8)


def test_one_seeded_pipeline_draws_independent_flips() -> None:
    # Regression: albumentations' Compose(seed=...) seeds every child alike, so hflip and vflip
    # would always fire together; build_transforms shares one generator instead.
    image, labels, _ = marked_sample()
    transform = build_transforms({"hflip": 0.5, "vflip": 0.5}, seed=3)
    poses = {dihedral_key(transform(image=image, mask=labels)["mask"]) for _ in range(64)}
    assert len(poses) == 4


def test_same_seed_same_draws_and_no_global_seeding() -> None:
    image, labels, _ = marked_sample()
    global_state = np.random.get_state()[1].copy()

    def draws(transform) -> list[tuple[int, ...]]:
        return [dihedral_key(transform(image=image, mask=labels)["mask"]) for _ in range(24)]

    seeded = draws(build_transforms(DEFAULT_AUGMENT, seed=7))
    assert draws(build_transforms(DEFAULT_AUGMENT, seed=7)) == seeded
    assert draws(build_transforms(DEFAULT_AUGMENT, seed=8)) != seeded
    reseeded = build_transforms(DEFAULT_AUGMENT, seed=8)
    reseed_transform(reseeded, 7)
    assert draws(reseeded) == seeded
    assert np.array_equal(np.random.get_state()[1], global_state)


def test_photometric_transforms_change_image_only() -> None:
    image, labels, efm = marked_sample()
    transform = build_transforms(
        {
            "brightness_contrast": {"limit": 0.2, "p": 1.0},
            "gauss_noise": {"std_range": [0.02, 0.06], "p": 1.0},
        },
        seed=0,
    )
    for _ in range(5):
        out = transform(image=image, mask=labels, efm=efm)
        assert not np.array_equal(out["image"], image)
        np.testing.assert_array_equal(out["mask"], labels)
        np.testing.assert_array_equal(out["efm"], efm)


def test_transform_without_efm_target() -> None:
    image, labels, _ = marked_sample()
    out = build_transforms({"hflip": 1.0}, seed=0)(image=image, mask=labels)
    np.testing.assert_array_equal(out["mask"], labels[:, ::-1])
    assert "efm" not in out


@pytest.mark.parametrize(
    "augment",
    [
        {},
        None,
        {"enabled": False, "hflip": 0.5},
        {"hflip": 0, "vflip": None, "brightness_contrast": None, "gauss_noise": 0},
    ],
)
def test_build_transforms_disabled(augment: dict | None) -> None:
    assert build_transforms(augment) is None


def test_build_transforms_default_set() -> None:
    transform = build_transforms(DEFAULT_AUGMENT)
    names = [type(t).__name__ for t in transform.transforms]
    assert names == [
        "HorizontalFlip",
        "VerticalFlip",
        "RandomRotate90",
        "RandomBrightnessContrast",
        "GaussNoise",
    ]
    assert transform.transforms[-1].std_range == (0.02, 0.06)
    assert transform.transforms[3].brightness_limit == (-0.2, 0.2)


@pytest.mark.parametrize(
    ("augment", "key"),
    [
        ({"hflip": 0.5, "colour_jitter": 0.5}, "augment.colour_jitter"),
        ({"hflip": 1.5}, "augment.hflip"),
        ({"rotate90": -0.1}, "augment.rotate90"),
        ({"vflip": "yes"}, "augment.vflip"),
        ({"brightness_contrast": {"limit": 0.2, "p": 2}}, "augment.brightness_contrast.p"),
        ({"brightness_contrast": {"limit": 0.2}}, "augment.brightness_contrast.p"),
        ({"brightness_contrast": {"limt": 0.2, "p": 1}}, "augment.brightness_contrast.limt"),
        ({"brightness_contrast": {"limit": 3, "p": 1}}, "augment.brightness_contrast.limit"),
        ({"gauss_noise": {"std_range": [0.1, 0.05], "p": 0.3}}, "augment.gauss_noise.std_range"),
        ({"gauss_noise": {"std_range": [0.02, 0.06], "p": 1.1}}, "augment.gauss_noise.p"),
        ({"enabled": "no"}, "augment.enabled"),
    ],
)
def test_build_transforms_errors_name_the_key(augment: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_transforms(augment)


def test_unknown_key_error_lists_valid_keys() -> None:
    with pytest.raises(ValueError, match="hflip, vflip, rotate90"):
        build_transforms({"flip": 0.5})


# -- EFM store --------------------------------------------------------------------------------


def test_efm_store_quantisation_and_clamping() -> None:
    store = EFMStore(3, 5, 7)
    assert not store.ready
    np.testing.assert_array_equal(store.get(1), np.zeros((5, 7), np.float32))
    maps = torch.rand(2, 5, 7, dtype=torch.float64)
    maps[0, 0, 0], maps[0, 0, 1], maps[1, 0, 0] = -0.5, 1.5, float("nan")
    original = maps.clone()
    store.update(torch.tensor([2, 0]), maps)
    assert store.ready
    torch.testing.assert_close(maps, original, equal_nan=True)  # caller's tensor untouched
    expected = maps.nan_to_num(0.0).clamp(0, 1).numpy()
    got = store.get(2), store.get(0)
    for plane, want in zip(got, expected, strict=True):
        assert plane.dtype == np.float32
        assert plane.shape == (5, 7)
        assert np.abs(plane - want).max() <= QUANT_TOL
    assert got[0][0, 0] == 0.0
    assert got[0][0, 1] == 1.0
    assert got[1][0, 0] == 0.0
    np.testing.assert_array_equal(store.get(1), 0.0)  # never updated


def test_efm_store_sizes() -> None:
    store = EFMStore(1, 512, 512)
    assert store.bytes_per_sample == 262144
    assert store.bytes_per_sample <= 0.3e6
    assert store.nbytes == 262144
    assert EFMStore(10, 4, 6).nbytes == 240
    assert store._maps.is_shared()


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 4, 4), "num_samples"), ((2, -1, 4), "height"), ((2, 4, 2.5), "width")],
)
def test_efm_store_constructor_validation(args: tuple, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        EFMStore(*args)


def test_efm_store_update_validation() -> None:
    store = EFMStore(4, 5, 6)
    with pytest.raises(ValueError, match=r"\(B, 5, 6\).*\(2, 6, 5\)"):
        store.update([0, 1], torch.zeros(2, 6, 5))
    with pytest.raises(ValueError, match=r"\(B, 5, 6\)"):
        store.update([0], torch.zeros(5, 6))
    with pytest.raises(ValueError, match="3 indices for 2 maps"):
        store.update([0, 1, 2], torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        store.update([4], torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match="integers"):
        store.update(torch.tensor([0.0]), torch.zeros(1, 5, 6))
    with pytest.raises(IndexError):
        store.get(4)
    assert not store.ready


def test_efm_store_mean_map_and_state_round_trip() -> None:
    store = EFMStore(4, 3, 3)
    assert torch.equal(store.mean_map(), torch.zeros(3, 3))
    store.update([1, 3], torch.stack([torch.full((3, 3), 0.2), torch.full((3, 3), 0.6)]))
    mean = store.mean_map()
    assert mean.dtype == torch.float32
    torch.testing.assert_close(mean, torch.full((3, 3), 0.4), atol=1 / 255, rtol=0)

    state = store.state_dict()
    restored = EFMStore(4, 3, 3)
    restored.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert restored.ready
    for i in range(4):
        np.testing.assert_array_equal(restored.get(i), store.get(i))
    torch.testing.assert_close(restored.mean_map(), mean)
    assert restored._maps.is_shared()
    with pytest.raises(ValueError, match="shape"):
        EFMStore(4, 3, 2).load_state_dict(state)
    empty = EFMStore(4, 3, 3)
    empty.load_state_dict(EFMStore(4, 3, 3).state_dict())
    assert not empty.ready


# -- dataset ----------------------------------------------------------------------------------


def test_dataset_item_dtypes_shapes_and_normalisation(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    dataset = SegmentationSamples(store, ["s2", "s0"])
    assert len(dataset) == 2
    item = dataset[0]
    assert set(item) == {"image", "mask", "index"}
    assert item["index"] == 0
    assert dataset[1]["index"] == 1
    image, labels = store.read("s2")
    assert item["image"].dtype == torch.float32
    assert item["image"].shape == (3, 6, 8)
    assert item["mask"].dtype == torch.int64
    assert item["mask"].shape == (6, 8)
    assert item["mask"][0, 0] == 255
    np.testing.assert_array_equal(item["mask"].numpy(), labels)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    expected = ((image / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(item["image"].numpy(), expected, atol=1e-5)
    unit = SegmentationSamples(store, ["s2"], mean=(0, 0, 0), std=(1, 1, 1))[0]["image"]
    assert float(unit.min()) >= 0.0
    assert float(unit.max()) <= 1.0


def test_dataset_applies_transform(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    plain = SegmentationSamples(store, ["s1"])[0]
    flipped = SegmentationSamples(store, ["s1"], build_transforms({"hflip": 1.0}))[0]
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))


def test_dataset_missing_ids(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=2)
    with pytest.raises(ValueError, match=r"2 of 3 .*'x1', 'x2'.*different preprocessing runs"):
        SegmentationSamples(store, ["s0", "x1", "x2"])


def test_dataset_efm(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=3)
    efm_store = EFMStore(3, 6, 8)
    dataset = SegmentationSamples(
        store, ["s0", "s1", "s2"], efm_store=efm_store, efm_indices=[2, 0, 1]
    )
    item = dataset[0]
    assert item["efm"].dtype == torch.float32
    assert item["efm"].shape == (6, 8)
    assert torch.equal(item["efm"], torch.zeros(6, 8))
    efm_store.update([2], torch.full((1, 6, 8), 0.8))
    torch.testing.assert_close(dataset[0]["efm"], torch.full((6, 8), 0.8), atol=QUANT_TOL, rtol=0)
    assert torch.equal(dataset[1]["efm"], torch.zeros(6, 8))  # row 0: not updated
    with pytest.raises(ValueError, match="out of range"):
        SegmentationSamples(store, ["s0"], efm_store=efm_store, efm_indices=[3])
    with pytest.raises(ValueError, match="2 rows for 1 ids"):
        SegmentationSamples(store, ["s0"], efm_store=efm_store, efm_indices=[0, 1])


def test_dataset_is_picklable(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=2, shape=(8, 8))  # square: rot90 keeps it
    efm_store = EFMStore(2, 8, 8)
    efm_store.update([1], torch.full((1, 8, 8), 0.5))
    dataset = SegmentationSamples(
        store, ["s0", "s1"], build_transforms(DEFAULT_AUGMENT, seed=1), efm_store
    )
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.ids == ("s0", "s1")
    torch.testing.assert_close(copy[1]["efm"], torch.full((8, 8), 0.5), atol=QUANT_TOL, rtol=0)
    assert copy[1]["image"].shape == (3, 8, 8)


def test_sample_shape(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=3, shape=(6, 8))
    assert sample_shape(store, store.ids) == (6, 8)
    samples = {
        "a": EncodedSample.from_arrays(np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8), np.uint8)),
        "b": EncodedSample.from_arrays(np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8), np.uint8)),
        "c": EncodedSample.from_arrays(np.zeros((8, 6, 3), np.uint8), np.zeros((8, 6), np.uint8)),
    }
    mixed = write_store(tmp_path / "mixed", samples)
    with pytest.raises(ValueError, match=r"'c' is \(8, 6\)"):
        sample_shape(mixed, ["a", "b", "c"])
    with pytest.raises(ValueError, match="no sample ids"):
        sample_shape(mixed, [])


# -- DataLoader workers -----------------------------------------------------------------------


def test_dataloader_workers_see_efm_updates(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=4)
    efm_store = EFMStore(4, 6, 8)
    dataset = SegmentationSamples(store, store.ids, efm_store=efm_store)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)

    efm_store.update([0, 1, 2, 3], torch.full((4, 6, 8), 0.25))  # after the DataLoader exists
    first = torch.cat([batch["efm"] for batch in loader])
    torch.testing.assert_close(first, torch.full((4, 6, 8), 0.25), atol=QUANT_TOL, rtol=0)

    # The workers are alive now; the next epoch must see a main-process update.
    efm_store.update(torch.tensor([1, 3]), torch.full((2, 6, 8), 0.75))
    second = [batch for batch in loader]
    efm = torch.cat([batch["efm"] for batch in second])
    assert torch.equal(torch.cat([batch["index"] for batch in second]), torch.arange(4))
    torch.testing.assert_close(efm[[0, 2]], torch.full((2, 6, 8), 0.25), atol=QUANT_TOL, rtol=0)
    torch.testing.assert_close(efm[[1, 3]], torch.full((2, 6, 8), 0.75), atol=QUANT_TOL, rtol=0)


def test_dataloader_workers_see_ready_flag_set_after_fork(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", count=2)
    efm_store = EFMStore(2, 6, 8)
    dataset = SegmentationSamples(store, store.ids, efm_store=efm_store)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    assert torch.equal(next(iter(loader))["efm"], torch.zeros(2, 6, 8))  # workers start here
    efm_store.update([0, 1], torch.ones(2, 6, 8))
    assert torch.equal(next(iter(loader))["efm"], torch.ones(2, 6, 8))


def test_dataloader_batches_and_worker_augmentation_seeds(tmp_path: Path) -> None:
    image, labels, _ = marked_sample()
    encoded = EncodedSample.from_arrays(image, labels)
    store = write_store(tmp_path / "marked", {f"m{i}": encoded for i in range(16)})
    dataset = SegmentationSamples(
        store, store.ids, build_transforms({"hflip": 0.5, "vflip": 0.5}, seed=5)
    )

    def epochs(seed: int) -> list[list[tuple[int, ...]]]:
        # Non-persistent workers: re-forked from the same parent state every epoch.
        loader = DataLoader(
            dataset,
            batch_size=1,
            num_workers=2,
            generator=torch.Generator().manual_seed(seed),
        )
        runs = []
        for _ in range(2):
            batches = list(loader)
            assert batches[0]["image"].shape == (1, 3, SIDE, SIDE)
            assert batches[0]["mask"].dtype == torch.int64
            runs.append([dihedral_key(batch["mask"][0].numpy()) for batch in batches])
        return runs

    first, second = epochs(0)
    # Each worker draws its own augmentations (samples alternate between the two workers) ...
    assert first[0::2] != first[1::2]
    # ... and each epoch new ones,
    assert first != second
    # ... yet the run is reproducible from the DataLoader's generator.
    assert epochs(0) == [first, second]
