"""Kedro datasets: the raw folder is read-only, the sample store is replaced atomically."""

import json

import numpy as np
import pytest
from kedro.io import DatasetError
from PIL import Image

from efm_seg.data.samples import EncodedSample, StoreChangedError, open_store, write_store
from efm_seg.framework.datasets import (
    ImageFolderDataset,
    SampleStoreDataset,
    SyntheticSceneFolderDataset,
)


def sample(value: int, size: int = 8) -> EncodedSample:
    return EncodedSample.from_arrays(
        np.full((size, size, 3), value, np.uint8), np.full((size, size), value % 3, np.uint8)
    )


def test_sample_store_round_trip_is_lossless(tmp_path):
    rng = np.random.default_rng(0)
    data = {
        f"id{i}": EncodedSample.from_arrays(
            rng.integers(0, 256, (12, 10, 3), dtype=np.uint8),
            rng.integers(0, 4, (12, 10), dtype=np.uint8),
        )
        for i in range(3)
    }
    dataset = SampleStoreDataset(path=str(tmp_path / "store"))
    assert not dataset.exists()
    dataset.save(data)
    store = dataset.load()
    assert store.ids == ("id0", "id1", "id2") and len(store) == 3 and "id1" in store
    for key, expected in data.items():
        image, labels = store.read(key)
        assert np.array_equal(image, expected.image)
        assert np.array_equal(labels, expected.labels)


def test_a_failed_save_leaves_the_previous_store_untouched(tmp_path):
    dataset = SampleStoreDataset(path=str(tmp_path / "store"))
    dataset.save({"old": sample(1)})

    class Exploding(dict):
        def items(self):
            yield "new", sample(2)
            raise OSError("disk full")

    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(Exploding())
    assert dataset.load().ids == ("old",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no staging left behind


def test_encoded_samples_validate_their_arrays():
    with pytest.raises(ValueError, match="image must be"):
        EncodedSample.from_arrays(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        EncodedSample.from_arrays(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="labels must be"):
        EncodedSample.from_arrays(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))


def test_a_partial_store_is_not_loaded(tmp_path):
    (tmp_path / "store" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="run the preprocessing pipeline"):
        open_store(tmp_path / "store")


def test_the_store_fingerprint_identifies_its_content(tmp_path):
    first = write_store(tmp_path / "a", {"x": sample(1), "y": sample(2)})
    assert open_store(tmp_path / "a").fingerprint == first.fingerprint
    same = write_store(tmp_path / "b", {"x": sample(1), "y": sample(2)})
    assert same.fingerprint == first.fingerprint  # same content, wherever and whenever written
    for other in (
        {"x": sample(1), "y": sample(3)},  # one pixel value
        {"y": sample(2), "x": sample(1)},  # order
        {"x": sample(1), "z": sample(2)},  # an id
        {"x": sample(1), "y": sample(2, size=9)},  # a size
    ):
        assert write_store(tmp_path / "c", other).fingerprint != first.fingerprint


def test_a_replaced_store_is_noticed(tmp_path):
    store = write_store(tmp_path / "s", {"x": sample(1)})
    store.check_unchanged("a test")
    write_store(tmp_path / "s", {"x": sample(1)})  # written again, same content: the same store
    store.check_unchanged("a test")
    write_store(tmp_path / "s", {"x": sample(2)})
    with pytest.raises(StoreChangedError, match=r"changed during a test \(fingerprint"):
        store.check_unchanged("a test")


def test_a_store_without_fingerprint_is_refused(tmp_path):
    write_store(tmp_path / "s", {"x": sample(1)})
    (tmp_path / "s" / "samples.json").write_text('{"ids": ["x"]}')  # as an earlier efm-seg wrote
    with pytest.raises(FileNotFoundError, match=r"no content fingerprint.*preprocessing"):
        open_store(tmp_path / "s")


def test_image_folder_is_read_only_and_must_exist(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(path=str(tmp_path / "nope")).load()
    folder = ImageFolderDataset(path=str(tmp_path))
    assert folder.load().root == tmp_path.resolve()
    with pytest.raises(DatasetError, match="never written"):
        folder.save({"anything": 1})


def test_synthetic_folder_is_generated_once_and_deterministically(tmp_path):
    args = {"n_scenes": 3, "seed": 5, "min_size": 64, "max_size": 80}
    first = SyntheticSceneFolderDataset(path=str(tmp_path / "a"), **args).load()
    second = SyntheticSceneFolderDataset(path=str(tmp_path / "b"), **args).load()
    files = first.list_files()
    assert len(files) == 6 and files == second.list_files()
    for name in files:
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes()
    stamp = (first.root / files[0]).stat().st_mtime_ns
    SyntheticSceneFolderDataset(path=str(tmp_path / "a"), **args).load()
    assert (first.root / files[0]).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 6])
def test_samples_of_any_channel_count_round_trip_through_the_store(tmp_path, channels):
    rng = np.random.default_rng(channels)
    images = {f"s{i}": rng.integers(0, 256, (5, 7, channels), dtype=np.uint8) for i in range(3)}
    labels = {k: rng.integers(0, 4, (5, 7), dtype=np.uint8) for k in images}
    samples = {k: EncodedSample.from_arrays(images[k], labels[k]) for k in images}
    assert samples["s0"].channels == channels
    np.testing.assert_array_equal(samples["s0"].image, images["s0"])
    bands = tuple(range(channels, 0, -1))
    written = write_store(tmp_path / "store", samples, bands=bands)
    store = open_store(tmp_path / "store")
    assert (store.channels, store.bands) == (written.channels, written.bands) == (channels, bands)
    for key, expected in images.items():
        image, mask = store.read(key)
        np.testing.assert_array_equal(image, expected)
        np.testing.assert_array_equal(mask, labels[key])
    # Three channels stay a plain RGB picture; other counts a grey stack of the bands.
    with Image.open(store.image_path("s0")) as picture:
        assert (picture.mode, picture.size) == (
            ("RGB", (7, 5)) if channels == 3 else ("L", (7, 5 * channels))
        )


def test_a_store_refuses_samples_with_different_channel_counts(tmp_path):
    labels = np.zeros((4, 4), np.uint8)
    samples = {
        "a": EncodedSample.from_arrays(np.zeros((4, 4, 3), np.uint8), labels),
        "b": EncodedSample.from_arrays(np.zeros((4, 4, 4), np.uint8), labels),
    }
    with pytest.raises(ValueError, match=r"differ in channel count \(\[3, 4\], at 'b'\)"):
        write_store(tmp_path / "store", samples)
    assert not (tmp_path / "store").exists()


def test_a_store_from_before_multi_band_reads_as_rgb(tmp_path):
    labels = np.zeros((4, 4), np.uint8)
    write_store(
        tmp_path / "store", {"a": EncodedSample.from_arrays(np.zeros((4, 4, 3), np.uint8), labels)}
    )
    index = tmp_path / "store" / "samples.json"
    content = json.loads(index.read_text())
    index.write_text(json.dumps({"ids": content["ids"], "fingerprint": content["fingerprint"]}))
    store = open_store(tmp_path / "store")
    assert (store.channels, store.bands) == (3, None)
